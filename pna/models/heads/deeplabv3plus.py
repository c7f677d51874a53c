"""DeepLabV3+ coarse head (MMSeg ``DepthwiseSeparableASPPHead`` conventions).

A depthwise-separable ASPP on res5 (512 channels, dilations 1/12/24/36, image pooling), upsampled
to res2 and concatenated with a 48-channel 1x1 projection of res2, then two depthwise-separable
3x3 conv-BN-ReLU and the classifier; logits come out at stride 4.
"""
from __future__ import annotations

import torch
from torch import nn

from ..resize import resize_to
from ._common import Classifier, check_in_channels, conv_bn_relu, separable_conv_bn_relu
from .aspp import ASPP


class DeepLabV3PlusHead(nn.Module):
    """ASPP (separable) on res5 + low-level res2 fusion; logits at res2 stride.

    >>> head = DeepLabV3PlusHead([8, 16, 32, 64], num_classes=3, channels=16, c1_channels=4, dilations=(1, 2))
    >>> head([torch.zeros(2, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate([8, 16, 32, 64])]).shape
    torch.Size([2, 3, 32, 32])
    """

    def __init__(self, in_channels: list[int], num_classes: int, channels: int = 512,
                 c1_channels: int = 48, dilations: tuple[int, ...] = (1, 12, 24, 36), dropout: float = 0.1):
        super().__init__()
        in_channels = check_in_channels(in_channels, "DeepLabV3PlusHead")
        self.aspp = ASPP(in_channels[-1], channels, tuple(dilations), separable=True)
        self.c1_bottleneck = conv_bn_relu(in_channels[0], c1_channels, 1)
        self.fuse = nn.Sequential(separable_conv_bn_relu(channels + c1_channels, channels),
                                  separable_conv_bn_relu(channels, channels))
        self.classifier = Classifier(channels, num_classes, dropout)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        low = self.c1_bottleneck(feats[0])
        high = resize_to(self.aspp(feats[-1]), low)
        return self.classifier(self.fuse(torch.cat([high, low], dim=1)))
