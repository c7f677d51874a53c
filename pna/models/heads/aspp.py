"""DeepLabV3 coarse head: Atrous Spatial Pyramid Pooling on res5 (MMSeg ``ASPPHead`` conventions).

Branches: image pooling (global average -> 1x1 conv, broadcast back), a 1x1 conv, and one dilated
3x3 conv per dilation > 1; the five outputs are concatenated and fused by a 3x3 conv; then the
classifier. Widths 512, dilations (1, 12, 24, 36) as in the authors' configs (SPEC.md).
"""
from __future__ import annotations

import torch
from torch import nn

from ._common import Classifier, check_in_channels, conv_bn_relu, separable_conv_bn_relu


class ImagePool(nn.Module):
    """Global average pooling -> 1x1 conv-BN-ReLU, broadcast back to the input size."""

    def __init__(self, in_channels: int, channels: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = conv_bn_relu(in_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pool(x)).expand(-1, -1, *x.shape[-2:])


class ASPP(nn.Module):
    """Image pooling + one branch per dilation (1 -> 1x1 conv), concatenated, fused by a 3x3 conv.

    ``separable=True`` makes the dilated branches depthwise-separable (DeepLabV3+).

    >>> ASPP(64, 16, dilations=(1, 2))(torch.zeros(2, 64, 9, 9)).shape
    torch.Size([2, 16, 9, 9])
    """

    def __init__(self, in_channels: int, channels: int, dilations: tuple[int, ...] = (1, 12, 24, 36),
                 separable: bool = False):
        super().__init__()
        if not dilations or any(d < 1 for d in dilations):
            raise ValueError(f"ASPP: dilations must be positive integers, got {dilations!r}")
        branches: list[nn.Module] = [ImagePool(in_channels, channels)]
        for d in dilations:
            if d == 1:
                branches.append(conv_bn_relu(in_channels, channels, 1))
            elif separable:
                branches.append(separable_conv_bn_relu(in_channels, channels, dilation=d))
            else:
                branches.append(conv_bn_relu(in_channels, channels, 3, dilation=d))
        self.branches = nn.ModuleList(branches)
        self.bottleneck = conv_bn_relu(len(branches) * channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(torch.cat([b(x) for b in self.branches], dim=1))


class ASPPHead(nn.Module):
    """DeepLabV3 head: ASPP on res5, then dropout 0.1 and a 1x1 classifier (logits at res5 stride).

    >>> head = ASPPHead([8, 16, 32, 64], num_classes=3, channels=16, dilations=(1, 2))
    >>> head([torch.zeros(2, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate([8, 16, 32, 64])]).shape
    torch.Size([2, 3, 4, 4])
    """

    def __init__(self, in_channels: list[int], num_classes: int, channels: int = 512,
                 dilations: tuple[int, ...] = (1, 12, 24, 36), dropout: float = 0.1):
        super().__init__()
        in_channels = check_in_channels(in_channels, "ASPPHead")
        self.aspp = ASPP(in_channels[-1], channels, tuple(dilations))
        self.classifier = Classifier(channels, num_classes, dropout)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.aspp(feats[-1]))
