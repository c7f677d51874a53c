"""Neighbourhood Aggregation Module (NAM): neighbourhood attention whose queries and keys come from
the backbone feature and whose values come from the previous prediction (paper Fig. 2b)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from pna.ops import na2d, na2d_attn

from .channels_last import ChannelsLinear


class NeighbourhoodAggregation(nn.Module):
    """NAM on channels-last maps: ``x`` (B, H, W, D) gives Q and K, ``v`` (B, H, W, D) gives V.

    Q, K = Linear(D, 2D)(x); V = Linear(D, D)(v); q is scaled by head_dim^-0.5; each pixel attends
    to its L x L neighbourhood (NATTEN borders) with a relative position bias; Linear(D, D) at the end.
    ``return_attn=True`` also returns the softmaxed weights (B, heads, H, W, Lh * Lw).

    Example:
        >>> nam = NeighbourhoodAggregation(dim=64, num_heads=2, window_size=3)
        >>> x = v = torch.randn(1, 5, 6, 64)
        >>> out, attn = nam(x, v, return_attn=True)
        >>> out.shape, attn.shape
        (torch.Size([1, 5, 6, 64]), torch.Size([1, 2, 5, 6, 9]))
    """

    def __init__(self, dim: int, num_heads: int, window_size: int = 9, impl: str = "auto"):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        if window_size < 1 or window_size % 2 == 0:
            raise ValueError(f"window_size must be a positive odd integer, got {window_size}")
        self.num_heads, self.window_size, self.impl = num_heads, window_size, impl
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qk = ChannelsLinear(dim, 2 * dim)
        self.v = ChannelsLinear(dim, dim)
        self.proj = ChannelsLinear(dim, dim)
        self.rpb = nn.Parameter(torch.zeros(num_heads, 2 * window_size - 1, 2 * window_size - 1))
        nn.init.trunc_normal_(self.rpb, std=0.02)

    def split_heads(self, x: Tensor) -> Tensor:
        """(B, H, W, heads * d) -> (B, heads, H, W, d)"""
        b, h, w, _ = x.shape
        return x.reshape(b, h, w, self.num_heads, self.head_dim).permute(0, 3, 1, 2, 4)

    def forward(self, x: Tensor, v: Tensor, return_attn: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        if x.shape[:3] != v.shape[:3]:
            raise ValueError(f"x {tuple(x.shape)} and v {tuple(v.shape)} must share (B, H, W)")
        q, k = self.qk(x).chunk(2, dim=-1)
        q, k, v = self.split_heads(q) * self.scale, self.split_heads(k), self.split_heads(self.v(v))
        out = na2d(q, k, v, self.rpb, self.window_size, impl=self.impl)  # (B, heads, H, W, d)
        out = self.proj(out.permute(0, 2, 3, 1, 4).flatten(3))
        if return_attn:
            return out, na2d_attn(q, k, self.rpb, self.window_size)
        return out
