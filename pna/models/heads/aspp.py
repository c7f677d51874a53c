"""DeepLabV3 coarse head: Atrous Spatial Pyramid Pooling on res5 (MMSeg ``ASPPHead`` conventions).

Branches: image pooling (global average -> 1x1 conv, broadcast back), a 1x1 conv, and one dilated
3x3 conv per dilation > 1; the five outputs are concatenated and fused by a 3x3 conv; then the
classifier. Widths 512, dilations (1, 12, 24, 36) as in the authors' MMSeg configs (docs/authors_settings.md).

``style="d2"`` is Detectron2's DeepLabV3 head, used by the authors' Cityscapes rows (256 channels,
dilations (1, 6, 12, 18)): the branches are fused by a 1x1 conv instead of a 3x3 one, and the image
pooling branch is a 1x1 conv with bias and ReLU but no norm (a BatchNorm over a 1x1 map is
degenerate at small batches). Dropout 0.1 then the 1x1 predictor; Detectron2 drops elements, not
channels (``dropout_kind="element"``, set by the paper profile of those rows). Detectron2's head
also pools over a window of the training crop's feature size (``pool_kernel``, e.g. 512x1024 / 16 =
32x64 for Cityscapes) with stride 1 and resizes the result back bilinearly: global pooling on a
training crop, local pooling on a larger test image. A map smaller than the window is pooled whole.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._common import Classifier, check_in_channels, conv_bn_relu, separable_conv_bn_relu


STYLES = ("mm", "d2")


class ImagePool(nn.Module):
    """Average pooling -> 1x1 conv-BN-ReLU (``norm=False``: conv with bias, ReLU), back to the input size.

    Global pooling by default; with ``kernel`` (h, w) a stride-1 window average whose map is resized
    back bilinearly (Detectron2), global again when the input is not larger than the window.

    >>> pool = ImagePool(4, 2, norm=False, kernel=(2, 2))
    >>> pool(torch.randn(1, 4, 5, 6)).shape, pool(torch.randn(1, 4, 2, 2)).shape
    (torch.Size([1, 2, 5, 6]), torch.Size([1, 2, 2, 2]))
    """

    def __init__(self, in_channels: int, channels: int, norm: bool = True, kernel: tuple[int, int] | None = None):
        super().__init__()
        self.kernel = None if kernel is None else tuple(kernel)
        self.conv = (conv_bn_relu(in_channels, channels, 1) if norm
                     else nn.Sequential(nn.Conv2d(in_channels, channels, 1), nn.ReLU(inplace=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        if self.kernel is None or (size[0] <= self.kernel[0] and size[1] <= self.kernel[1]):
            return self.conv(x.mean((2, 3), keepdim=True)).expand(-1, -1, *size)
        kernel = (min(self.kernel[0], size[0]), min(self.kernel[1], size[1]))
        pooled = self.conv(F.avg_pool2d(x, kernel, stride=1))
        return F.interpolate(pooled, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Image pooling + one branch per dilation (1 -> 1x1 conv), concatenated, fused by a 3x3 conv.

    ``separable=True`` makes the dilated branches depthwise-separable (DeepLabV3+); ``style="d2"``
    fuses with a 1x1 conv and has no norm in the pooling branch (Detectron2).

    >>> ASPP(64, 16, dilations=(1, 2))(torch.zeros(2, 64, 9, 9)).shape
    torch.Size([2, 16, 9, 9])
    >>> ASPP(64, 16, dilations=(1, 2), style="d2").bottleneck[0].kernel_size
    (1, 1)
    """

    def __init__(self, in_channels: int, channels: int, dilations: tuple[int, ...] = (1, 12, 24, 36),
                 separable: bool = False, style: str = "mm", pool_kernel: tuple[int, int] | None = None):
        super().__init__()
        if not dilations or any(d < 1 for d in dilations):
            raise ValueError(f"ASPP: dilations must be positive integers, got {dilations!r}")
        if style not in STYLES:
            raise ValueError(f"ASPP: style must be one of {STYLES}, got {style!r}")
        branches: list[nn.Module] = [ImagePool(in_channels, channels, norm=style == "mm", kernel=pool_kernel)]
        for d in dilations:
            if d == 1:
                branches.append(conv_bn_relu(in_channels, channels, 1))
            elif separable:
                branches.append(separable_conv_bn_relu(in_channels, channels, dilation=d))
            else:
                branches.append(conv_bn_relu(in_channels, channels, 3, dilation=d))
        self.branches = nn.ModuleList(branches)
        self.bottleneck = conv_bn_relu(len(branches) * channels, channels, 3 if style == "mm" else 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bottleneck(torch.cat([b(x) for b in self.branches], dim=1))


class ASPPHead(nn.Module):
    """DeepLabV3 head: ASPP on res5, then dropout 0.1 and a 1x1 classifier (logits at res5 stride).

    >>> head = ASPPHead([8, 16, 32, 64], num_classes=3, channels=16, dilations=(1, 2))
    >>> head([torch.zeros(2, c, 32 // 2**i, 32 // 2**i) for i, c in enumerate([8, 16, 32, 64])]).shape
    torch.Size([2, 3, 4, 4])
    """

    def __init__(self, in_channels: list[int], num_classes: int, channels: int = 512,
                 dilations: tuple[int, ...] = (1, 12, 24, 36), dropout: float = 0.1, style: str = "mm",
                 pool_kernel: tuple[int, int] | None = None, dropout_kind: str = "channel"):
        super().__init__()
        in_channels = check_in_channels(in_channels, "ASPPHead")
        self.aspp = ASPP(in_channels[-1], channels, tuple(dilations), style=style, pool_kernel=pool_kernel)
        self.classifier = Classifier(channels, num_classes, dropout, dropout_kind)

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return self.classifier(self.aspp(feats[-1]))
