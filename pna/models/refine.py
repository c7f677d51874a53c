"""The progressive refinement: four stages refine P0 into P1..P4 with F1..F4 = res5..res2."""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from timm.layers import Mlp
from torch import Tensor, nn

from .channels_last import PointwiseConv, as_channels_linear
from .nam import NeighbourhoodAggregation
from .sam import SelfAggregation

RESIZE_MODES = ("nearest", "bilinear")


class RefineStage(nn.Module):
    """One stage: P_m = Conv1x1(LN(x + MLP(LN(x)))) with x = F^S + NAM(LN(query), LN(value)).

    query = Conv1x1(F_m); value = Conv1x1(P_{m-1} resized to F_m); F^S = SAM(query) (``use_sam``)
    or the query itself (the paper's "NAM only" ablation). ``embed_bias=False``: the two 1x1
    embeddings have no bias (the authors' Detectron2 rows).

    Example:
        >>> stage = RefineStage(in_channels=16, num_classes=3, embed_dim=64, window_size=3)
        >>> stage(torch.randn(1, 16, 8, 8), torch.randn(1, 3, 4, 4)).shape
        torch.Size([1, 3, 8, 8])
    """

    def __init__(self, in_channels: int, num_classes: int, embed_dim: int, head_dim: int = 32,
                 window_size: int = 9, use_sam: bool = True, resize_mode: str = "nearest", impl: str = "auto",
                 embed_bias: bool = True):
        super().__init__()
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
        if embed_dim % head_dim:
            raise ValueError(f"embed_dim ({embed_dim}) must be a multiple of head_dim ({head_dim})")
        num_heads = embed_dim // head_dim
        self.resize_mode = resize_mode
        self.query = PointwiseConv(in_channels, embed_dim, bias=embed_bias)
        self.value = PointwiseConv(num_classes, embed_dim, bias=embed_bias)
        self.sam = SelfAggregation(embed_dim, num_heads) if use_sam else nn.Identity()
        self.norm_query = nn.LayerNorm(embed_dim)
        self.norm_value = nn.LayerNorm(embed_dim)
        self.nam = NeighbourhoodAggregation(embed_dim, num_heads, window_size, impl=impl)
        self.norm_mlp = nn.LayerNorm(embed_dim)
        self.mlp = Mlp(embed_dim, embed_dim, act_layer=nn.GELU)
        self.mlp.fc1, self.mlp.fc2 = as_channels_linear(self.mlp.fc1), as_channels_linear(self.mlp.fc2)
        self.norm_out = nn.LayerNorm(embed_dim)
        self.classifier = PointwiseConv(embed_dim, num_classes)

    def resize(self, logits: Tensor, size: Sequence[int]) -> Tensor:
        if tuple(logits.shape[-2:]) == tuple(size):
            return logits
        align = False if self.resize_mode == "bilinear" else None
        return F.interpolate(logits, size=tuple(size), mode=self.resize_mode, align_corners=align)

    def forward(self, feat: Tensor, prev_logits: Tensor, return_attn: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        # channels-last inside (pna.models.channels_last): the 1x1 embeddings and the SAM return
        # NCHW-shaped views of (B, H, W, C) memory, whose permutes below are views too
        x = self.query(feat)
        v = self.value(self.resize(prev_logits, feat.shape[-2:]))
        shortcut = self.sam(x).permute(0, 2, 3, 1)  # from the un-normalised embedding
        x, v = self.norm_query(x.permute(0, 2, 3, 1)), self.norm_value(v.permute(0, 2, 3, 1))
        aggregated = self.nam(x, v, return_attn=return_attn)
        aggregated, attn = aggregated if return_attn else (aggregated, None)
        x = shortcut + aggregated
        x = x + self.mlp(self.norm_mlp(x))
        # plain NCHW logits (the next stage resizes them, the losses upsample them)
        logits = self.classifier(self.norm_out(x).permute(0, 3, 1, 2)).contiguous()
        return (logits, attn) if return_attn else logits


class ProgressiveRefinement(nn.Module):
    """Stages m = 1..4 refine P0 with res5, res4, res3, res2 (strides 32 -> 4), widths ``embed_dims``.

    ``in_channels`` is the backbone's ``[res2, res3, res4, res5]``; ``forward(feats, p0)`` returns
    ``[P1, P2, P3, P4]`` (with ``return_attn=True`` also the NAM weights of each stage).

    Example:
        >>> refine = ProgressiveRefinement([8, 16, 32, 64], num_classes=3, embed_dims=(64, 32, 32, 32), window_size=3)
        >>> feats = [torch.randn(1, c, s, s) for c, s in zip((8, 16, 32, 64), (16, 8, 4, 2))]
        >>> [tuple(p.shape[-2:]) for p in refine(feats, torch.randn(1, 3, 2, 2))]
        [(2, 2), (4, 4), (8, 8), (16, 16)]
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int,
                 embed_dims: Sequence[int] = (768, 384, 192, 96), head_dim: int = 32, window_size: int = 9,
                 use_sam: bool = True, resize_mode: str = "nearest", impl: str = "auto", embed_bias: bool = True):
        super().__init__()
        if len(in_channels) != 4 or len(embed_dims) != 4:
            raise ValueError(f"need 4 feature widths and 4 embed_dims, got {list(in_channels)} and {list(embed_dims)}")
        self.stages = nn.ModuleList(
            RefineStage(c, num_classes, d, head_dim, window_size, use_sam, resize_mode, impl, embed_bias)
            for c, d in zip(reversed(list(in_channels)), embed_dims)
        )

    def forward(self, feats: Sequence[Tensor], p0: Tensor, return_attn: bool = False) -> list[Tensor] | tuple[list[Tensor], list[Tensor]]:
        preds, attns, prev = [], [], p0
        for stage, feat in zip(self.stages, reversed(list(feats))):
            out = stage(feat, prev, return_attn=return_attn)
            prev, attn = out if return_attn else (out, None)
            preds.append(prev)
            attns.append(attn)
        return (preds, attns) if return_attn else preds
