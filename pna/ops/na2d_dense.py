"""Dense-score neighbourhood attention for small maps.

On a small map (the stride-32 and stride-16 grids, and every grid of the CPU smoke runs) the
slot-by-slot loop of the ``slots`` path spends its time in thousands of tiny ops. Here one batched
matmul computes every query-key score, the window's scores are gathered, and the weights are
scattered back into a dense matrix for a second matmul; autograd derives the backward. It holds
``B * heads * (H*W)**2`` scores, so the dispatcher only picks it when that is small.
"""
from __future__ import annotations

import torch

from .window import neighbour_index, relative_bias

# Largest B * heads * (H*W)^2 score matrix the automatic dispatch accepts (64 MiB in float32).
MAX_DENSE_SCORES = 1 << 24


def fits_dense(q: torch.Tensor) -> bool:
    batch, heads, height, width = q.shape[:4]
    return batch * heads * (height * width) ** 2 <= MAX_DENSE_SCORES


def flat_window_index(height: int, width: int, kernel_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Flattened key index (row * W + col) of each query's window slots, shape ``(H*W, Lh*Lw)``.

    Example:
        >>> flat_window_index(2, 3, 3).tolist()[0]
        [0, 1, 2, 3, 4, 5]
    """
    rows = neighbour_index(height, kernel_size, device)  # (H, Lh)
    cols = neighbour_index(width, kernel_size, device)  # (W, Lw)
    index = rows[:, None, :, None] * width + cols[None, :, None, :]  # (H, W, Lh, Lw)
    return index.reshape(height * width, -1)


def _weights(q: torch.Tensor, k: torch.Tensor, rpb: torch.Tensor, kernel_size: int):
    batch, heads, height, width, _ = q.shape
    index = flat_window_index(height, width, kernel_size, q.device).expand(batch, heads, -1, -1)
    scores = q.flatten(2, 3) @ k.flatten(2, 3).transpose(-1, -2)  # (B, h, HW, HW)
    logits = scores.gather(-1, index) + relative_bias(rpb, height, width, kernel_size).flatten(1, 2)
    return logits.softmax(dim=-1), index


def na2d_attn_dense(q: torch.Tensor, k: torch.Tensor, rpb: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Softmaxed weights ``(B, heads, H, W, Lh * Lw)`` (no input checks, no scaling)."""
    attn, _ = _weights(q, k, rpb, kernel_size)
    return attn.unflatten(2, q.shape[2:4])


def na2d_dense(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rpb: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Neighbourhood attention output ``(B, heads, H, W, dim_v)`` (no input checks, no scaling).

    Example:
        >>> from pna.ops.na2d_reference import na2d_reference
        >>> q, k, v = torch.randn(3, 1, 2, 5, 6, 4).unbind(0)
        >>> na2d_dense(q, k, v, torch.zeros(2, 5, 5), 3).allclose(na2d_reference(q, k, v, torch.zeros(2, 5, 5), 3), atol=1e-6)
        True
    """
    attn, index = _weights(q, k, rpb, kernel_size)
    dense = torch.zeros(index.shape[:3] + (index.shape[2],), dtype=attn.dtype, device=attn.device)
    dense = dense.scatter(-1, index, attn)
    return (dense @ v.flatten(2, 3)).unflatten(2, q.shape[2:4])
