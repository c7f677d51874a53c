"""Self-Aggregation Module (SAM): a Restormer transformer block (MDTA + GDFN).

The modules take NCHW-shaped maps and return NCHW-shaped maps in channels-last memory; inside they
work on ``(B, H, W, C)`` maps (``forward_nhwc``, the refinement's layout, :mod:`pna.models.channels_last`).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.layers import LayerNorm2d
from torch import Tensor, nn

from .channels_last import depthwise, layer_norm, pointwise_nhwc, to_nhwc

NORMALIZE_EPS = 1e-12  # F.normalize's default: q and k are divided by max(norm, eps)


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
        return self.forward_nhwc(to_nhwc(x)).permute(0, 3, 1, 2)

    def forward_nhwc(self, x: Tensor) -> Tensor:
        """(B, H, W, C) -> (B, H, W, C). The normalisation over positions divides the d x d products
        by the two norms (the same quotients as normalising q and k first, one pass less)."""
        b, h, w, c = x.shape
        qkv = depthwise(self.qkv_dw, pointwise_nhwc(self.qkv, x)).view(b, h * w, 3, self.num_heads, -1)
        q, k, v = qkv.unbind(2)  # (B, HW, heads, d) views
        norms = qkv[:, :, :2].square().sum(1).clamp_min(NORMALIZE_EPS ** 2).sqrt()  # (B, 2, heads, d)
        if b == 1:  # (B, heads, d, HW) @ (B, heads, HW, d) folds its batch without a copy only for B = 1
            gram = torch.matmul(q.permute(0, 2, 3, 1), k.permute(0, 2, 1, 3))
        else:
            gram = torch.stack([torch.matmul(q[i].permute(1, 2, 0), k[i].permute(1, 0, 2)) for i in range(b)])
        scale = norms[:, 0, :, :, None] * norms[:, 1, :, None, :]
        attn = (gram / scale * self.temperature).softmax(dim=-1)  # (B, heads, d, d)
        out = torch.matmul(v.permute(0, 2, 1, 3), attn.transpose(-2, -1))  # (B, heads, HW, d)
        return pointwise_nhwc(self.proj, out.permute(0, 2, 1, 3).reshape(b, h, w, c))


# Without gradients the feed-forward runs in slabs of rows (SLAB_PIXELS pixels, at least SLAB_MIN_ROWS
# rows, plus one halo row each side for the 3x3 depthwise convolution): its 2 x 2.66-wide hidden maps
# then stay in cache and come from reused memory instead of fresh pages the kernel faults and zeroes
# on every forward (benchmarks/sam_slabs.py -> results/benchmarks/sam_slabs_cpu.csv). Maps up to
# two slabs run whole. In training the whole map runs (autograd keeps every hidden map anyway), and
# so does a traced forward (the halo rows are recomputation, not FLOPs of the model).
SLAB_PIXELS, SLAB_MIN_ROWS = 4096, 8


class GatedFeedForward(nn.Module):
    """GDFN: Conv1x1 (D -> 2 * hidden) -> depthwise 3x3 -> gelu(x1) * x2 -> Conv1x1 (hidden -> D).

    Example:
        >>> ffn = GatedFeedForward(dim=8).eval()
        >>> x = torch.randn(1, 40, 300, 8)  # (B, H, W, C): slabs of 13 rows (13, 13, 13, 1) without gradients
        >>> with torch.no_grad():
        ...     bool(torch.allclose(ffn.forward_nhwc(x), ffn.forward_whole(x), atol=1e-6))
        True
    """

    def __init__(self, dim: int, expansion: float = 2.66):
        super().__init__()
        hidden = int(dim * expansion)
        self.expand = nn.Conv2d(dim, 2 * hidden, 1, bias=False)
        self.dw = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=False)
        self.shrink = nn.Conv2d(hidden, dim, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_nhwc(to_nhwc(x)).permute(0, 3, 1, 2)

    def forward_nhwc(self, x: Tensor) -> Tensor:
        """(B, H, W, C) -> (B, H, W, C): in slabs of rows without gradients, else the whole map."""
        height, width = x.shape[1:3]
        rows = max(SLAB_MIN_ROWS, SLAB_PIXELS // width)
        if torch.is_grad_enabled() or torch.jit.is_tracing() or height <= 2 * rows:
            return self.forward_whole(x)  # a trace (fvcore's FLOP count) sees the model, not the halo rows
        out = torch.empty_like(x)
        for top in range(0, height, rows):
            bottom = min(height, top + rows)
            first, last = max(0, top - 1), min(height, bottom + 1)  # the halo rows the 3x3 kernel reads
            out[:, top:bottom] = self._hidden_to_out(self._hidden(x[:, first:last])[:, top - first:bottom - first])
        return out

    def forward_whole(self, x: Tensor) -> Tensor:
        return self._hidden_to_out(self._hidden(x))

    def _hidden(self, x: Tensor) -> Tensor:
        return depthwise(self.dw, pointwise_nhwc(self.expand, x))

    def _hidden_to_out(self, hidden: Tensor) -> Tensor:
        x1, x2 = hidden.chunk(2, dim=-1)
        return pointwise_nhwc(self.shrink, F.gelu(x1) * x2)


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
        return self.forward_nhwc(to_nhwc(x)).permute(0, 3, 1, 2)

    def forward_nhwc(self, x: Tensor) -> Tensor:
        x = x + self.attn.forward_nhwc(layer_norm(self.norm1, x))
        return x + self.ffn.forward_nhwc(layer_norm(self.norm2, x))
