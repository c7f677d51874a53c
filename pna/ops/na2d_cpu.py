"""Fast neighbourhood attention without window copies: loop over the ``Lh * Lw`` window slots.

For one slot ``(dy, dx)`` the keys of all queries form a shifted view of K: the columns are
gathered once per ``dx``, the rows are read as slices (:func:`chunk_row_pieces`), so the extra
memory is a few block-sized buffers instead of ``L * L`` copies of K and V. The work goes block by
block (rows x heads, ~2 MB of fp32) so a block and its key rows stay in cache across the
``L * L`` slots: the loop is bound by arithmetic, not memory traffic. Three primitives cover
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

from .common import compute_dtype, quiet_tracer, untraced
from .window import chunk_row_pieces, neighbour_index, relative_bias, row_pieces


# Elements of x per block: small enough to stay in cache across the Lh * Lw slots, large enough
# that Python and thread start-up per op stay negligible (measured on a 2-core box: 2^15 was
# 2-4x slower than 2^19, whole maps ~2x slower).
_BLOCK_ELEMENTS = 1 << 19


def _blocks(groups: int, height: int, row_elements: int):
    """Yield ``(group_slice, row_begin, row_end)`` blocks of a ``(groups, H, W, C)`` tensor."""
    rows = max(1, min(height, _BLOCK_ELEMENTS // row_elements))
    group = max(1, _BLOCK_ELEMENTS // (rows * row_elements)) if rows == height else 1
    for g in range(0, groups, group):
        for begin in range(0, height, rows):
            yield slice(g, g + group), begin, min(begin + rows, height)


def _block_pieces(height: int, kernel_size: int, begin: int, end: int):
    span = min(kernel_size, height)
    pieces = [chunk_row_pieces(height, kernel_size, dy, begin, end) for dy in range(span)]
    return pieces[0][0], [p for _, p in pieces]


def _add_to_columns(out: torch.Tensor, grad_cols: torch.Tensor, kernel_size: int, dx: int) -> None:
    """Adjoint of ``y.index_select(2, cols[:, dx])``: add column-gathered grads back in place."""
    for query_cols, key_cols in row_pieces(out.shape[2], kernel_size, dx):
        part = grad_cols[:, :, query_cols]
        if key_cols.stop - key_cols.start != query_cols.stop - query_cols.start:
            part = part.sum(2, keepdim=True)
        out[:, :, key_cols] += part


def _slot_dot(x: torch.Tensor, y: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``(G, H, W, C) x (G, H, W, C) -> (Lh * Lw, G, H, W)`` window dot products (slot-major)."""
    groups, height, width, channels = x.shape
    cols = neighbour_index(width, kernel_size, x.device)
    span_w = cols.shape[1]
    out = x.new_empty(min(kernel_size, height) * span_w, groups, height, width)
    for block, begin, end in _blocks(groups, height, width * channels):
        key_rows, pieces = _block_pieces(height, kernel_size, begin, end)
        x_block, y_block = x[block, begin:end], y[block, key_rows]
        for dx in range(span_w):
            y_cols = y_block.index_select(2, cols[:, dx])
            for dy, dy_pieces in enumerate(pieces):
                slot = out[dy * span_w + dx, block, begin:end]
                for query_rows, key_rows_local in dy_pieces:
                    slot[:, query_rows] = _dot(x_block[:, query_rows], y_cols[:, key_rows_local])
    return out


def _slot_sum(w: torch.Tensor, y: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``(Lh * Lw, G, H, W) x (G, H, W, C) -> (G, H, W, C)`` window weighted sums."""
    groups, height, width, channels = y.shape
    cols = neighbour_index(width, kernel_size, y.device)
    span_w = cols.shape[1]
    out = torch.zeros_like(y)
    for block, begin, end in _blocks(groups, height, width * channels):
        key_rows, pieces = _block_pieces(height, kernel_size, begin, end)
        out_block, y_block = out[block, begin:end], y[block, key_rows]
        for dx in range(span_w):
            y_cols = y_block.index_select(2, cols[:, dx])
            for dy, dy_pieces in enumerate(pieces):
                w_slot = w[dy * span_w + dx, block, begin:end].unsqueeze(-1)
                for query_rows, key_rows_local in dy_pieces:
                    out_block[:, query_rows].addcmul_(w_slot[:, query_rows], y_cols[:, key_rows_local])
    return out


def _slot_scatter(w: torch.Tensor, x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """``(Lh * Lw, G, H, W) x (G, H, W, C) -> (G, H, W, C)``: adjoint of the key gather."""
    groups, height, width, channels = x.shape
    span_w = min(kernel_size, width)
    out = torch.zeros_like(x)
    for block, begin, end in _blocks(groups, height, width * channels):
        key_rows, pieces = _block_pieces(height, kernel_size, begin, end)
        x_block, out_block = x[block, begin:end], out[block, key_rows]
        grad_cols = torch.empty_like(out_block)
        for dx in range(span_w):
            grad_cols.zero_()
            for dy, dy_pieces in enumerate(pieces):
                w_slot = w[dy * span_w + dx, block, begin:end].unsqueeze(-1)
                for query_rows, key_rows_local in dy_pieces:
                    if key_rows_local.stop - key_rows_local.start == query_rows.stop - query_rows.start:
                        grad_cols[:, key_rows_local].addcmul_(w_slot[:, query_rows], x_block[:, query_rows])
                    else:  # a clamped border run: every query of the run shares this key row
                        shared = (w_slot[:, query_rows] * x_block[:, query_rows]).sum(1, keepdim=True)
                        grad_cols[:, key_rows_local] += shared
            _add_to_columns(out_block, grad_cols, kernel_size, dx)
    return out


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1)


def _as_groups(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(B, h, H, W, C) -> (B * h, H, W, C)`` contiguous, in the working dtype."""
    return x.to(dtype).reshape(-1, *x.shape[2:]).contiguous()


def _as_slots(w: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(B, h, H, W, S) -> (S, B * h, H, W)`` contiguous (slot-major), in the working dtype."""
    return w.to(dtype).movedim(-1, 0).reshape(w.shape[-1], -1, *w.shape[2:4]).contiguous()


def _from_slots(out: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return out.movedim(0, -1).reshape(*like.shape[:4], out.shape[0]).to(like.dtype)


class NeighbourhoodQK(torch.autograd.Function):
    """``logits[..., t] = q . k[key(t)]`` over the clamped window, shape ``(B, h, H, W, Lh * Lw)``."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, kernel_size: int) -> torch.Tensor:
        ctx.save_for_backward(q, k)
        ctx.kernel_size = kernel_size
        work = compute_dtype(q.dtype)
        with quiet_tracer():
            return untraced(lambda: _from_slots(_slot_dot(_as_groups(q, work), _as_groups(k, work), kernel_size), q), q)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_logits: torch.Tensor):
        q, k = ctx.saved_tensors
        work = compute_dtype(q.dtype)
        grad = _as_slots(grad_logits, work)
        grad_q = grad_k = None
        if ctx.needs_input_grad[0]:
            grad_q = _slot_sum(grad, _as_groups(k, work), ctx.kernel_size).to(q.dtype).view(q.shape)
        if ctx.needs_input_grad[1]:
            grad_k = _slot_scatter(grad, _as_groups(q, work), ctx.kernel_size).to(k.dtype).view(k.shape)
        return grad_q, grad_k, None


class NeighbourhoodAV(torch.autograd.Function):
    """``out = sum_t attn[..., t] v[key(t)]`` over the clamped window, shape ``(B, h, H, W, dim_v)``."""

    @staticmethod
    def forward(ctx, attn: torch.Tensor, v: torch.Tensor, kernel_size: int) -> torch.Tensor:
        ctx.save_for_backward(attn, v)
        ctx.kernel_size = kernel_size
        work = compute_dtype(v.dtype)
        with quiet_tracer():
            out = untraced(lambda: _slot_sum(_as_slots(attn, work), _as_groups(v, work), kernel_size), v)
        return out.to(v.dtype).view(v.shape)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        attn, v = ctx.saved_tensors
        work = compute_dtype(v.dtype)
        grad = _as_groups(grad_out, work)
        grad_attn = grad_v = None
        if ctx.needs_input_grad[0]:
            grad_attn = _from_slots(_slot_dot(grad, _as_groups(v, work), ctx.kernel_size), attn)
        if ctx.needs_input_grad[1]:
            grad_v = _slot_scatter(_as_slots(attn, work), grad, ctx.kernel_size).to(v.dtype).view(v.shape)
        return grad_attn, grad_v, None


def na2d_attn_slots(q: torch.Tensor, k: torch.Tensor, rpb: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Softmaxed neighbourhood weights ``(B, heads, H, W, Lh * Lw)`` (no input checks, no scaling).

    Example:
        >>> q = k = torch.randn(1, 2, 4, 4, 8)
        >>> na2d_attn_slots(q, k, torch.zeros(2, 5, 5), 3).shape
        torch.Size([1, 2, 4, 4, 9])
    """
    logits = NeighbourhoodQK.apply(q, k, kernel_size)
    logits = logits + relative_bias(rpb, q.shape[2], q.shape[3], kernel_size).to(logits.dtype)
    return logits.softmax(dim=-1)


def na2d_slots(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rpb: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Neighbourhood attention output ``(B, heads, H, W, dim_v)`` (no input checks, no scaling).

    Example:
        >>> q = k = v = torch.randn(1, 2, 4, 4, 8)
        >>> na2d_slots(q, k, v, torch.zeros(2, 5, 5), 3).shape
        torch.Size([1, 2, 4, 4, 8])
    """
    return NeighbourhoodAV.apply(na2d_attn_slots(q, k, rpb, kernel_size), v, kernel_size)
