"""Neighbourhood attention through ``torch.nn.attention.flex_attention`` (fused on CUDA).

The clamped window is a ``mask_mod`` on the flattened ``H * W`` sequence (turned into a sparse
block mask, so a compiled kernel skips blocks outside every window), the relative position bias a
``score_mod``. flex scales scores by ``1/sqrt(d)`` by default; na2d does not scale, so ``scale=1``.
Without compilation (e.g. on CPU) flex runs an unfused reference that materialises all
``(H W)^2`` scores: fine for tiny test shapes only.
"""
from __future__ import annotations

import functools

import torch
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

from .window import window_starts


def _window_mask_mod(height: int, width: int, kernel_size: int, device: torch.device):
    row_start = window_starts(height, kernel_size, device)
    col_start = window_starts(width, kernel_size, device)
    span_h, span_w = min(kernel_size, height), min(kernel_size, width)

    def mask_mod(b, h, q_idx, kv_idx):
        q_row, q_col = q_idx // width, q_idx % width
        k_row, k_col = kv_idx // width, kv_idx % width
        dy = k_row - row_start[q_row]
        dx = k_col - col_start[q_col]
        return (dy >= 0) & (dy < span_h) & (dx >= 0) & (dx < span_w)

    return mask_mod


@functools.lru_cache(maxsize=32)
def window_block_mask(height: int, width: int, kernel_size: int, device: str) -> BlockMask:
    """Block mask of the clamped window on the flattened map (cached per shape and device).

    Example:
        >>> window_block_mask(4, 5, 3, "cpu").shape[-2:]
        (20, 20)
    """
    mask_mod = _window_mask_mod(height, width, kernel_size, torch.device(device))
    seq = height * width
    return create_block_mask(mask_mod, B=None, H=None, Q_LEN=seq, KV_LEN=seq, device=device)


@functools.lru_cache(maxsize=1)
def _compiled_flex():
    return torch.compile(flex_attention, dynamic=False)


def na2d_flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rpb: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Neighbourhood attention output ``(B, heads, H, W, dim_v)`` via flex_attention (no checks).

    Compiled on CUDA, eager elsewhere. Example:
        >>> q = k = v = torch.randn(1, 2, 4, 4, 8)
        >>> na2d_flex(q, k, v, torch.zeros(2, 5, 5), 3).shape
        torch.Size([1, 2, 4, 4, 8])
    """
    batch, heads, height, width, _ = q.shape
    last = kernel_size - 1

    def score_mod(score, b, h, q_idx, kv_idx):
        # Masked-out pairs are scored too (then dropped), so keep their table index in range.
        row_offset = (kv_idx // width - q_idx // width + last).clamp(0, 2 * last)
        col_offset = (kv_idx % width - q_idx % width + last).clamp(0, 2 * last)
        return score + rpb[h, row_offset, col_offset].to(score.dtype)

    block_mask = window_block_mask(height, width, kernel_size, str(q.device))
    attend = _compiled_flex() if q.is_cuda else flex_attention
    out = attend(
        q.flatten(2, 3), k.flatten(2, 3), v.flatten(2, 3),
        score_mod=score_mod, block_mask=block_mask, scale=1.0,
    )
    return out.unflatten(2, (height, width))
