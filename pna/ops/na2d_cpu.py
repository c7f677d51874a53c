"""Fast neighbourhood attention without window copies: loop over the ``Lh * Lw`` window slots.

For one slot ``(dy, dx)`` the keys of all queries form a shifted view of K: the columns are
gathered once per ``dx`` (one copy of K), the rows are read as slices (:func:`row_pieces`), so the
peak extra memory is a couple of K-sized buffers instead of ``L * L`` copies. Three primitives cover
the forward and backward of both products (``key(n, t)`` = key of query ``n`` in slot ``t``):

- ``_slot_dot(x, y)[n, t] = x[n] . y[key(n, t)]``          QK forward, AV grad of the weights
- ``_slot_sum(w, y)[n] = sum_t w[n, t] y[key(n, t)]``      AV forward, QK grad of q
- ``_slot_scatter(w, x)[m] = sum_{key(n, t) = m} w[n, t] x[n]``  grads of k and v

Low precision inputs are computed in float32 (81 accumulations in bfloat16 lose too much).
Works on any device (plain torch ops); on CUDA the flex path is preferred for ``na2d``.
"""
from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

from .window import neighbour_index, relative_bias, row_pieces


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


def _add_to_columns(out: torch.Tensor, grad_cols: torch.Tensor, kernel_size: int, dx: int) -> None:
    """Adjoint of ``y.index_select(3, cols[:, dx])``: add column-gathered grads back in place."""
    for query_cols, key_cols in row_pieces(out.shape[3], kernel_size, dx):
        part = grad_cols[:, :, :, query_cols]
        if key_cols.stop - key_cols.start != query_cols.stop - query_cols.start:
            part = part.sum(3, keepdim=True)
        out[:, :, :, key_cols] += part


def _slot_dot(x: torch.Tensor, y: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``(B, h, H, W, C) x (B, h, H, W, C) -> (B, h, H, W, Lh * Lw)`` window dot products."""
    height, width = x.shape[2:4]
    cols = neighbour_index(width, kernel_size, x.device)
    span_h, span_w = min(kernel_size, height), cols.shape[1]
    out = x.new_empty(span_h * span_w, *x.shape[:4])  # slot-major so each slot writes contiguously
    for dx in range(span_w):
        y_cols = y.index_select(3, cols[:, dx])
        for dy in range(span_h):
            slot = out[dy * span_w + dx]
            for query_rows, key_rows in row_pieces(height, kernel_size, dy):
                slot[:, :, query_rows] = torch.linalg.vecdot(x[:, :, query_rows], y_cols[:, :, key_rows])
    return out.movedim(0, -1).contiguous()


def _slot_sum(w: torch.Tensor, y: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``(B, h, H, W, Lh * Lw) x (B, h, H, W, C) -> (B, h, H, W, C)`` window weighted sums."""
    height, width = y.shape[2:4]
    cols = neighbour_index(width, kernel_size, y.device)
    span_h, span_w = min(kernel_size, height), cols.shape[1]
    w_slots = w.movedim(-1, 0).contiguous()
    out = torch.zeros_like(y)
    for dx in range(span_w):
        y_cols = y.index_select(3, cols[:, dx])
        for dy in range(span_h):
            w_slot = w_slots[dy * span_w + dx].unsqueeze(-1)
            for query_rows, key_rows in row_pieces(height, kernel_size, dy):
                out[:, :, query_rows].addcmul_(w_slot[:, :, query_rows], y_cols[:, :, key_rows])
    return out


def _slot_scatter(w: torch.Tensor, x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``(B, h, H, W, Lh * Lw) x (B, h, H, W, C) -> (B, h, H, W, C)``: adjoint of the key gather."""
    height, width = x.shape[2:4]
    span_h, span_w = min(kernel_size, height), min(kernel_size, width)
    w_slots = w.movedim(-1, 0).contiguous()
    out = torch.zeros_like(x)
    grad_cols = torch.empty_like(x)
    for dx in range(span_w):
        grad_cols.zero_()
        for dy in range(span_h):
            w_slot = w_slots[dy * span_w + dx].unsqueeze(-1)
            for query_rows, key_rows in row_pieces(height, kernel_size, dy):
                if key_rows.stop - key_rows.start == query_rows.stop - query_rows.start:
                    grad_cols[:, :, key_rows].addcmul_(w_slot[:, :, query_rows], x[:, :, query_rows])
                else:  # a clamped border run: every query of the run shares this key row
                    contribution = (w_slot[:, :, query_rows] * x[:, :, query_rows]).sum(2, keepdim=True)
                    grad_cols[:, :, key_rows] += contribution
        _add_to_columns(out, grad_cols, kernel_size, dx)
    return out


class NeighbourhoodQK(torch.autograd.Function):
    """``logits[..., t] = q . k[key(t)]`` over the clamped window, shape ``(B, h, H, W, Lh * Lw)``."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, kernel_size: int) -> torch.Tensor:
        ctx.save_for_backward(q, k)
        ctx.kernel_size = kernel_size
        work = _compute_dtype(q.dtype)
        return _slot_dot(q.to(work), k.to(work), kernel_size).to(q.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_logits: torch.Tensor):
        q, k = ctx.saved_tensors
        work = _compute_dtype(q.dtype)
        grad = grad_logits.to(work)
        grad_q = grad_k = None
        if ctx.needs_input_grad[0]:
            grad_q = _slot_sum(grad, k.to(work), ctx.kernel_size).to(q.dtype)
        if ctx.needs_input_grad[1]:
            grad_k = _slot_scatter(grad, q.to(work), ctx.kernel_size).to(k.dtype)
        return grad_q, grad_k, None


class NeighbourhoodAV(torch.autograd.Function):
    """``out = sum_t attn[..., t] v[key(t)]`` over the clamped window, shape ``(B, h, H, W, dim_v)``."""

    @staticmethod
    def forward(ctx, attn: torch.Tensor, v: torch.Tensor, kernel_size: int) -> torch.Tensor:
        ctx.save_for_backward(attn, v)
        ctx.kernel_size = kernel_size
        work = _compute_dtype(v.dtype)
        return _slot_sum(attn.to(work), v.to(work), kernel_size).to(v.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        attn, v = ctx.saved_tensors
        work = _compute_dtype(v.dtype)
        grad = grad_out.to(work)
        grad_attn = grad_v = None
        if ctx.needs_input_grad[0]:
            grad_attn = _slot_dot(grad, v.to(work), ctx.kernel_size).to(attn.dtype)
        if ctx.needs_input_grad[1]:
            grad_v = _slot_scatter(attn.to(work), grad, ctx.kernel_size).to(v.dtype)
        return grad_attn, grad_v, None


def na2d_attn_fast(q: torch.Tensor, k: torch.Tensor, rpb: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Softmaxed neighbourhood weights ``(B, heads, H, W, Lh * Lw)`` (no input checks, no scaling).

    Example:
        >>> q = k = torch.randn(1, 2, 4, 4, 8)
        >>> na2d_attn_fast(q, k, torch.zeros(2, 5, 5), 3).shape
        torch.Size([1, 2, 4, 4, 9])
    """
    logits = NeighbourhoodQK.apply(q, k, kernel_size)
    logits = logits + relative_bias(rpb, q.shape[2], q.shape[3], kernel_size).to(logits.dtype)
    return logits.softmax(dim=-1)


def na2d_fast(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rpb: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Neighbourhood attention output ``(B, heads, H, W, dim_v)`` (no input checks, no scaling).

    Example:
        >>> q = k = v = torch.randn(1, 2, 4, 4, 8)
        >>> na2d_fast(q, k, v, torch.zeros(2, 5, 5), 3).shape
        torch.Size([1, 2, 4, 4, 8])
    """
    return NeighbourhoodAV.apply(na2d_attn_fast(q, k, rpb, kernel_size), v, kernel_size)
