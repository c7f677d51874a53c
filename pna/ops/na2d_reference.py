"""Reference neighbourhood attention: gather every window explicitly, then plain torch ops.

Short and obviously correct, used by the tests as ground truth. It materialises ``Lh * Lw`` copies
of K and V, so it is only for small inputs.
"""
from __future__ import annotations

import torch

from .window import neighbour_index, relative_bias


def gather_windows(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Every query's window of ``x`` ``(B, heads, H, W, C)`` as ``(B, heads, H, W, Lh * Lw, C)``.

    Example:
        >>> gather_windows(torch.randn(1, 2, 4, 5, 3), 3).shape
        torch.Size([1, 2, 4, 5, 9, 3])
    """
    height, width = x.shape[2:4]
    rows = neighbour_index(height, kernel_size, x.device)  # (H, Lh)
    cols = neighbour_index(width, kernel_size, x.device)  # (W, Lw)
    windows = x[:, :, rows[:, None, :, None], cols[None, :, None, :]]  # (B, h, H, W, Lh, Lw, C)
    return windows.flatten(4, 5)


def na2d_attn_reference(q: torch.Tensor, k: torch.Tensor, rpb: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Softmaxed neighbourhood weights ``(B, heads, H, W, Lh * Lw)`` (no input checks, no scaling).

    Example:
        >>> q = k = torch.randn(1, 2, 4, 4, 8)
        >>> na2d_attn_reference(q, k, torch.zeros(2, 5, 5), 3).sum(-1).allclose(torch.ones(1, 2, 4, 4))
        True
    """
    logits = torch.einsum("bhijd,bhijtd->bhijt", q, gather_windows(k, kernel_size))
    logits = logits + relative_bias(rpb, q.shape[2], q.shape[3], kernel_size)
    return logits.softmax(dim=-1)


def na2d_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rpb: torch.Tensor, kernel_size: int
) -> torch.Tensor:
    """Neighbourhood attention output ``(B, heads, H, W, dim_v)`` (no input checks, no scaling).

    Example:
        >>> q = k = v = torch.randn(1, 2, 4, 4, 8)
        >>> na2d_reference(q, k, v, torch.zeros(2, 5, 5), 3).shape
        torch.Size([1, 2, 4, 4, 8])
    """
    attn = na2d_attn_reference(q, k, rpb, kernel_size)
    return torch.einsum("bhijt,bhijtd->bhijd", attn, gather_windows(v, kernel_size))
