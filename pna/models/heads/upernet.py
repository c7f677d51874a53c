"""UperNet coarse head (Xiao et al. 2018, MMSeg ``UPerHead`` conventions).

Pyramid pooling (scales 1, 2, 3, 6) on res5 gives the top level; res2..res4 get 1x1 lateral
conv-BN-ReLU; a top-down pathway adds the bilinearly upsampled upper level; each of res2..res4 then
goes through a 3x3 conv-BN-ReLU; all four levels are upsampled to res2, concatenated and fused by a
3x3 conv-BN-ReLU (512 channels); then the classifier. Logits come out at stride 4.
"""
from __future__ import annotations

import torch
from torch import nn

from ..resize import resize_to
from ._common import Classifier, check_in_channels, conv_bn_relu
from .psp import PyramidPooling


class UPerHead(nn.Module):
    """PSP on res5 + FPN fusion of res2..res5; logits at res2 stride.

    >>> head = UPerHead([8, 16, 32, 64], num_classes=3, channels=8)
    >>> head([torch.zeros(2, c, 64 // 2**i, 64 // 2**i) for i, c in enumerate([8, 16, 32, 64])]).shape
    torch.Size([2, 3, 64, 64])
    """

    def __init__(self, in_channels: list[int], num_classes: int, channels: int = 512,
                 pool_scales: tuple[int, ...] = (1, 2, 3, 6), dropout: float = 0.1):
        super().__init__()
        in_channels = check_in_channels(in_channels, "UPerHead")
        self.ppm = PyramidPooling(in_channels[-1], channels, tuple(pool_scales))
        self.lateral = nn.ModuleList(conv_bn_relu(c, channels, 1) for c in in_channels[:-1])
        self.fpn_convs = nn.ModuleList(conv_bn_relu(channels, channels, 3) for _ in in_channels[:-1])
        self.fuse = conv_bn_relu(len(in_channels) * channels, channels, 3)
        self.classifier = Classifier(channels, num_classes, dropout)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        levels = [conv(f) for conv, f in zip(self.lateral, feats[:-1])] + [self.ppm(feats[-1])]
        for i in range(len(levels) - 1, 0, -1):
            levels[i - 1] = levels[i - 1] + resize_to(levels[i], levels[i - 1])
        outs = [conv(x) for conv, x in zip(self.fpn_convs, levels[:-1])] + [levels[-1]]
        outs = [outs[0]] + [resize_to(x, outs[0]) for x in outs[1:]]
        return self.classifier(self.fuse(torch.cat(outs, dim=1)))
