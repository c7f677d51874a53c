"""fvcore FLOP counting for the slot-loop and tiled neighbourhood attention paths.

fvcore traces the custom autograd Functions of :mod:`pna.ops.na2d_cpu` and
:mod:`pna.ops.na2d_tiled` as ``prim::PythonOp.<ClassName>`` and, without a handle, skips them. One
multiply-add = one FLOP (fvcore's convention): QK costs ``B * heads * H * W * Lh * Lw * dim``, AV
``B * heads * H * W * Lh * Lw * dim_v``. The tiled path is counted by the same formula (the useful
window products, not the halo's extra multiply-adds), so both paths report the same GFLOPs.

Example:
    >>> import torch
    >>> from fvcore.nn import FlopCountAnalysis
    >>> from pna.ops import na2d
    >>> class Tiny(torch.nn.Module):
    ...     def forward(self, x):
    ...         return na2d(x, x, x, torch.zeros(2, 5, 5), 3, impl="slots")  # the path the handles count
    >>> flops = FlopCountAnalysis(Tiny(), torch.randn(1, 2, 4, 4, 8)).set_op_handle(**fvcore_handles())
    >>> flops.unsupported_ops_warnings(False)  # doctest: +ELLIPSIS
    <...>
    >>> flops.total() == 2 * (1 * 2 * 4 * 4 * 9 * 8)
    True
"""
from __future__ import annotations

from math import prod
from typing import Any, Callable

from fvcore.nn.jit_handles import get_shape

from .na2d_cpu import NeighbourhoodAV, NeighbourhoodQK
from .na2d_tiled import HaloTiledNA


def _qk_flops(inputs: list[Any], outputs: list[Any]) -> int:
    """QK logits ``(B, h, H, W, S)`` from q ``(B, h, H, W, dim)``: one MAC per (logit, channel)."""
    return prod(get_shape(outputs[0])) * get_shape(inputs[0])[-1]


def _av_flops(inputs: list[Any], outputs: list[Any]) -> int:
    """AV output from weights ``(B, h, H, W, S)`` and v ``(..., dim_v)``: one MAC per (weight, channel)."""
    return prod(get_shape(inputs[0])) * get_shape(inputs[1])[-1]


def _tiled_flops(inputs: list[Any], outputs: list[Any]) -> int:
    """Whole attention from q ``(B, h, H, W, dim)``, rpb ``(h, 2L-1, 2L-1)``: QK plus AV window products."""
    batch, heads, height, width, dim = get_shape(inputs[0])
    kernel_size = (get_shape(inputs[3])[-1] + 1) // 2
    window = min(kernel_size, height) * min(kernel_size, width)
    return batch * heads * height * width * window * (dim + get_shape(outputs[0])[-1])


def fvcore_handles() -> dict[str, Callable[[list[Any], list[Any]], int]]:
    """Op name -> fvcore handle, for ``FlopCountAnalysis(...).set_op_handle(**fvcore_handles())``."""
    return {
        f"prim::PythonOp.{NeighbourhoodQK.__name__}": _qk_flops,
        f"prim::PythonOp.{NeighbourhoodAV.__name__}": _av_flops,
        f"prim::PythonOp.{HaloTiledNA.__name__}": _tiled_flops,
    }
