"""PSPNet coarse head: Pyramid Pooling Module on res5 (MMSeg ``PSPHead`` conventions).

Each pool scale s (1, 2, 3, 6) averages res5 to an s x s grid, projects it with a 1x1 conv-BN-ReLU
and upsamples it back (bilinear); res5 and the four pooled maps are concatenated and fused by a 3x3
conv-BN-ReLU (512 channels), then the classifier.
"""
from __future__ import annotations

import torch
from torch import nn

from ..resize import resize_to
from ._common import Classifier, check_in_channels, conv_bn_relu


class PyramidPooling(nn.Module):
    """res5 -> concat(res5, up(conv(pool_s(res5))) for s in scales) -> 3x3 conv to ``channels``.

    >>> PyramidPooling(32, 8)(torch.zeros(2, 32, 7, 7)).shape
    torch.Size([2, 8, 7, 7])
    """

    def __init__(self, in_channels: int, channels: int, pool_scales: tuple[int, ...] = (1, 2, 3, 6)):
        super().__init__()
        if not pool_scales or any(s < 1 for s in pool_scales):
            raise ValueError(f"PyramidPooling: pool_scales must be positive integers, got {pool_scales!r}")
        self.stages = nn.ModuleList(
            nn.Sequential(nn.AdaptiveAvgPool2d(s), conv_bn_relu(in_channels, channels, 1)) for s in pool_scales)
        self.bottleneck = conv_bn_relu(in_channels + len(pool_scales) * channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = [resize_to(stage(x), x) for stage in self.stages]
        return self.bottleneck(torch.cat([x, *pooled], dim=1))


class PSPHead(nn.Module):
    """PSPNet head: pyramid pooling on res5, dropout 0.1, 1x1 classifier (logits at res5 stride).

    >>> head = PSPHead([8, 16, 32, 64], num_classes=3, channels=16)
    >>> head([torch.zeros(2, c, 64 // 2**i, 64 // 2**i) for i, c in enumerate([8, 16, 32, 64])]).shape
    torch.Size([2, 3, 8, 8])
    """

    def __init__(self, in_channels: list[int], num_classes: int, channels: int = 512,
                 pool_scales: tuple[int, ...] = (1, 2, 3, 6), dropout: float = 0.1):
        super().__init__()
        in_channels = check_in_channels(in_channels, "PSPHead")
        self.ppm = PyramidPooling(in_channels[-1], channels, tuple(pool_scales))
        self.classifier = Classifier(channels, num_classes, dropout)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.ppm(feats[-1]))
