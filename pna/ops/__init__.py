"""Neighbourhood attention ops (NATTEN classic 2D semantics), see :mod:`pna.ops.na2d`."""
from .na2d import na2d, na2d_attn

__all__ = ["na2d", "na2d_attn"]
