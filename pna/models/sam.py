"""Self-Aggregation Module (SAM): a Restormer transformer block (MDTA + GDFN) on NCHW maps."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import Tensor, nn


class ChannelNorm(LayerNorm2d):
    """timm's LayerNorm2d with a plain NCHW output.

    LayerNorm2d normalises a permuted view and permutes back, which leaves a channels-last layout;
    the convolutions after it then return channels-last weight gradients, whose strides differ from
    their (contiguous) weights', and DDP warns "Grad strides do not match bucket view strides" on
    every start. ``clone`` rather than ``contiguous``: on a 1x1 map the channels-last strides count as
    contiguous and would be kept. Same parameters and state-dict keys as LayerNorm2d.
    """

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x).clone(memory_format=torch.contiguous_format)


class ChannelAttention(nn.Module):
    """MDTA: per head a (D/h x D/h) attention across channels, q and k L2-normalised over positions.

    Example:
        >>> ChannelAttention(dim=32, num_heads=2)(torch.randn(1, 32, 5, 7)).shape
        torch.Size([1, 32, 5, 7])
    """

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=False)
        self.qkv_dw = nn.Conv2d(3 * dim, 3 * dim, 3, padding=1, groups=3 * dim, bias=False)
        self.proj = nn.Conv2d(dim, dim, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv_dw(self.qkv(x)).reshape(b, 3, self.num_heads, c // self.num_heads, h * w).unbind(1)
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)  # (B, heads, d, d)
        return self.proj((attn @ v).reshape(b, c, h, w))


class GatedFeedForward(nn.Module):
    """GDFN: Conv1x1 (D -> 2 * hidden) -> depthwise 3x3 -> gelu(x1) * x2 -> Conv1x1 (hidden -> D)."""

    def __init__(self, dim: int, expansion: float = 2.66):
        super().__init__()
        hidden = int(dim * expansion)
        self.expand = nn.Conv2d(dim, 2 * hidden, 1, bias=False)
        self.dw = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=False)
        self.shrink = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.dw(self.expand(x)).chunk(2, dim=1)
        return self.shrink(F.gelu(x1) * x2)


class SelfAggregation(nn.Module):
    """SAM = Restormer block: x = x + MDTA(LN(x)); x = x + GDFN(LN(x)); LN over channels, eps 1e-5.

    Example:
        >>> SelfAggregation(dim=64, num_heads=2)(torch.randn(2, 64, 4, 6)).shape
        torch.Size([2, 64, 4, 6])
    """

    def __init__(self, dim: int, num_heads: int, ffn_expansion: float = 2.66):
        super().__init__()
        self.norm1 = ChannelNorm(dim, eps=1e-5)
        self.attn = ChannelAttention(dim, num_heads)
        self.norm2 = ChannelNorm(dim, eps=1e-5)
        self.ffn = GatedFeedForward(dim, ffn_expansion)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))
