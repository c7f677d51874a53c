"""PNA: Progressive Neighborhood Aggregation for semantic segmentation refinement.

The map of the package is in README.md ("Where things are").
"""
__version__ = "0.1.0"
