"""Semantic FPN coarse head (Kirillov et al. 2019, MMSeg ``FPN`` neck + ``FPNHead`` conventions).

FPN neck: a 1x1 lateral conv per level (256 channels), top-down pathway with nearest upsampling
and addition, then a 3x3 output conv per level (plain convs with bias, no norm, as in the neck).
Head: each pyramid level goes through max(1, log2(stride / 4)) 3x3 conv-BN-ReLU (128 channels),
each followed by a 2x bilinear upsampling until stride 4; the levels are summed; then the
classifier. Logits come out at stride 4.

The Detectron2 rows (Cityscapes, DeepGlobe, Trans10k) use Detectron2's variant of the same head:
GroupNorm(32) instead of BatchNorm and no dropout before the predictor (``norm="gn", dropout=0``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..resize import resize_to
from ._common import Classifier, check_in_channels, conv_bn_relu


class FPN(nn.Module):
    """Feature pyramid: ``[res2..res5] -> [P2..P5]``, each with ``channels`` channels.

    >>> outs = FPN([8, 16], channels=4)([torch.zeros(1, 8, 8, 8), torch.zeros(1, 16, 4, 4)])
    >>> [tuple(o.shape) for o in outs]
    [(1, 4, 8, 8), (1, 4, 4, 4)]
    """

    def __init__(self, in_channels: list[int], channels: int = 256):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, channels, 1) for c in in_channels)
        self.output = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in in_channels)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral, feats)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:],
                                                              mode="nearest")
        return [conv(x) for conv, x in zip(self.output, laterals)]


def _scale_head(in_channels: int, channels: int, stride: int, base_stride: int, norm: str = "bn") -> nn.Sequential:
    """3x3 conv-BN-ReLU blocks that bring one pyramid level to ``base_stride`` by 2x upsamplings."""
    steps = max(1, int(math.log2(stride) - math.log2(base_stride)))
    layers: list[nn.Module] = []
    for k in range(steps):
        layers.append(conv_bn_relu(in_channels if k == 0 else channels, channels, 3, norm=norm))
        if stride != base_stride:
            layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
    return nn.Sequential(*layers)


class SemanticFPNHead(nn.Module):
    """FPN neck + semantic FPN head on ``[res2..res5]``; logits at res2 stride.

    ``forward(feats, return_features=True)`` also returns P2 of the FPN (the fine-grained features
    PointRend samples in the MMSeg FPN + PointRend model).

    >>> head = SemanticFPNHead([8, 16, 32, 64], num_classes=3, fpn_channels=8, channels=4)
    >>> head([torch.zeros(1, c, 64 // 2**i, 64 // 2**i) for i, c in enumerate([8, 16, 32, 64])]).shape
    torch.Size([1, 3, 64, 64])
    """

    def __init__(self, in_channels: list[int], num_classes: int, channels: int = 128, fpn_channels: int = 256,
                 feature_strides: tuple[int, ...] = (4, 8, 16, 32), dropout: float = 0.1, norm: str = "bn"):
        super().__init__()
        in_channels = check_in_channels(in_channels, "SemanticFPNHead")
        if len(feature_strides) != len(in_channels):
            raise ValueError(f"SemanticFPNHead: feature_strides {feature_strides!r} must match in_channels "
                             f"{in_channels!r} in length")
        self.fpn = FPN(in_channels, fpn_channels)
        self.scale_heads = nn.ModuleList(
            _scale_head(fpn_channels, channels, s, feature_strides[0], norm) for s in feature_strides)
        self.classifier = Classifier(channels, num_classes, dropout)
        self.fine_channels = fpn_channels

    def forward(self, feats: list[torch.Tensor], return_features: bool = False):
        pyramid = self.fpn(feats)
        x = self.scale_heads[0](pyramid[0])
        for level, head in zip(pyramid[1:], self.scale_heads[1:]):
            x = x + resize_to(head(level), x)
        logits = self.classifier(x)
        return (logits, pyramid[0]) if return_features else logits
