"""PNA: Progressive Neighborhood Aggregation for semantic segmentation refinement.

The public API, loaded on first use so that ``import pna.paths`` stays light::

    >>> import pna
    >>> sorted(pna.__all__)
    ['build_dataset', 'create_model', 'evaluate_model', 'list_configs', 'load_config']

Training is ``pna.train.train(config)`` (``pna.train`` is the module, also ``python -m pna.train``).

The map of the package is in README.md ("Where things are").
"""
from importlib import import_module

__version__ = "0.1.0"

_EXPORTS = {
    "create_model": "pna.models",
    "build_dataset": "pna.data",
    "load_config": "pna.configs",
    "list_configs": "pna.configs",
    "evaluate_model": "pna.evaluate",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pna' has no attribute {name!r}")
