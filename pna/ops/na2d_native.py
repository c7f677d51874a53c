"""Fused CPU neighbourhood attention: the autograd Function around the C++ kernel of
:mod:`pna.ops.native` (``na2d_kernel.cpp``: layout, edge handling and threading are described there).

q, k, v are read in place from any ``(B, heads, H, W, dim)`` strides with a unit channel stride (the
NAM's head views of its channels-last projections: no copies), and the output and the input
gradients are returned as ``(B, heads, H, W, dim)`` views of ``(B, H, W, heads, dim)`` memory, the
layout the NAM's output projection reads without a copy. The forward keeps the softmaxed weights
for the backward (``B * heads * Lh * Lw`` floats per pixel) when a gradient is needed. Half-precision
inputs are computed in float32 (as the other paths, :func:`pna.ops.common.compute_dtype`).
"""
from __future__ import annotations

import ctypes

import torch
from torch.autograd.function import once_differentiable

from .common import compute_dtype
from .native import library

MAX_KERNEL = 33  # the kernel pads rows by 16 columns: r = L // 2 <= 16


def supports(q: torch.Tensor, kernel_size: int) -> bool:
    """Whether the kernel can run this input: CPU, a floating dtype, L <= 33, and it is built."""
    return (q.device.type == "cpu" and q.dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16)
            and kernel_size <= MAX_KERNEL and library() is not None)


def _strides(t: torch.Tensor) -> ctypes.Array:
    return (ctypes.c_int64 * 4)(*t.stride()[:4])


def _unit_channels(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    t = t.to(dtype)
    return t if t.stride(-1) == 1 else t.contiguous()


def _heads_view(batch: int, heads: int, height: int, width: int, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """An empty ``(B, heads, H, W, dim)`` view of ``(B, H, W, heads, dim)`` memory."""
    return torch.empty(batch, height, width, heads, dim, dtype=dtype).permute(0, 3, 1, 2, 4)


def _sizes(height: int, width: int, kernel_size: int, dtype: torch.dtype) -> tuple[int, int, int]:
    """(planar row length, window slots, edge floats per query row) of the kernel's buffers."""
    sizes = (ctypes.c_int64 * 4)()
    library().pna_na2d_sizes(height, width, kernel_size, int(dtype == torch.float64), sizes)
    return sizes[0], sizes[1], sizes[2]


def _suffix(dtype: torch.dtype) -> str:
    return "f64" if dtype == torch.float64 else "f32"


def _forward(q, k, v, rpb, kernel_size: int, keep: bool, attn: bool = False):
    """Run the kernel's forward; returns (output or None, packed q/k/v, weights kept or None, attn or None)."""
    work = compute_dtype(q.dtype)
    batch, heads, height, width, dim = q.shape
    dim_v = v.shape[-1]
    q, k, v = (_unit_channels(t, work) for t in (q, k, v))
    rpb = rpb.detach().to(work).contiguous()
    row, slots, _ = _sizes(height, width, kernel_size, work)
    packed = [torch.empty(batch * heads, c, height, row, dtype=work) for c in (dim, dim, dim_v)]
    probs = torch.empty(batch * heads, height, slots, row, dtype=work) if keep else None
    out = None if attn else _heads_view(batch, heads, height, width, dim_v, work)
    weights = torch.empty(batch, heads, height, width, slots, dtype=work) if attn else None
    shape = (ctypes.c_int64 * 7)(batch, heads, height, width, dim, dim_v, kernel_size)
    getattr(library(), f"pna_na2d_forward_{_suffix(work)}")(
        q.data_ptr(), _strides(q), k.data_ptr(), _strides(k), v.data_ptr(), _strides(v), rpb.data_ptr(), shape,
        None if out is None else out.data_ptr(), None if out is None else _strides(out),
        *(t.data_ptr() for t in packed), None if probs is None else probs.data_ptr(),
        None if weights is None else weights.data_ptr(), None if weights is None else _strides(weights),
        torch.get_num_threads())
    return out, packed, probs, weights


class FusedNA(torch.autograd.Function):
    """Neighbourhood attention ``(B, heads, H, W, dim_v)`` with gradients for q, k, v and rpb."""

    @staticmethod
    def forward(ctx, q, k, v, rpb, kernel_size: int):
        keep = any(ctx.needs_input_grad[:4])
        out, packed, probs, _ = _forward(q, k, v, rpb, kernel_size, keep)
        if keep:
            ctx.save_for_backward(*packed, probs)
            ctx.meta = (q.shape, v.shape[-1], kernel_size, q.dtype, k.dtype, v.dtype, rpb.dtype)
        return out.to(v.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        q_packed, k_packed, v_packed, probs = ctx.saved_tensors
        (batch, heads, height, width, dim), dim_v, kernel_size, *dtypes = ctx.meta
        work = probs.dtype
        grad_out = _unit_channels(grad_out, work)
        row = _sizes(height, width, kernel_size, work)[0]
        grad_packed = torch.empty(batch * heads, dim_v, height, row, dtype=work)
        grads = [_heads_view(batch, heads, height, width, c, work) for c in (dim, dim, dim_v)]
        grad_rpb = torch.empty(heads, 2 * kernel_size - 1, 2 * kernel_size - 1, dtype=work)
        shape = (ctypes.c_int64 * 7)(batch, heads, height, width, dim, dim_v, kernel_size)
        getattr(library(), f"pna_na2d_backward_{_suffix(work)}")(
            grad_out.data_ptr(), _strides(grad_out), q_packed.data_ptr(), k_packed.data_ptr(), v_packed.data_ptr(),
            probs.data_ptr(), shape, grad_packed.data_ptr(), grads[0].data_ptr(), _strides(grads[0]),
            grads[1].data_ptr(), _strides(grads[1]), grads[2].data_ptr(), _strides(grads[2]), grad_rpb.data_ptr(),
            torch.get_num_threads())
        return (*(g.to(dtype) for g, dtype in zip(grads, dtypes)), grad_rpb.to(dtypes[3]), None)


def na2d_native(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rpb: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Neighbourhood attention output ``(B, heads, H, W, dim_v)`` (no input checks, no scaling).

    Example:
        >>> from pna.ops.na2d_reference import na2d_reference
        >>> q, k, v = torch.randn(3, 1, 2, 11, 13, 4, dtype=torch.float64).unbind(0)
        >>> rpb = torch.randn(2, 9, 9, dtype=torch.float64)
        >>> bool(na2d_native(q, k, v, rpb, 5).allclose(na2d_reference(q, k, v, rpb, 5))) if supports(q, 5) else True
        True
    """
    return FusedNA.apply(q, k, v, rpb, kernel_size)


def na2d_attn_native(q: torch.Tensor, k: torch.Tensor, rpb: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Softmaxed weights ``(B, heads, H, W, Lh * Lw)``, without a gradient (the explorer's maps)."""
    weights = _forward(q, k, k, rpb, kernel_size, keep=False, attn=True)[3]
    return weights.to(q.dtype)
