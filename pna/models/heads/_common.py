"""Building blocks shared by the coarse heads: conv-BN-ReLU, depthwise-separable conv, classifier.

The heads follow the MMSegmentation conventions the authors used: every conv is followed by
BatchNorm and ReLU, and the classifier is ``Dropout2d(0.1)`` then a 1x1 conv to the class logits.
"""
from __future__ import annotations

import torch
from torch import nn

from torchvision.ops import Conv2dNormActivation


NORMS = ("bn", "gn")
# Dropout before the classifier: MMSeg drops whole channels (nn.Dropout2d); Detectron2's DeepLabV3
# head drops single elements of the ASPP output (F.dropout).
DROPOUT_KINDS = {"channel": nn.Dropout2d, "element": nn.Dropout}


def _norm_layer(norm: str):
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    # GroupNorm with 32 groups: Detectron2's "GN" (the semantic FPN head of the d2 rows).
    return nn.BatchNorm2d if norm == "bn" else (lambda channels: nn.GroupNorm(min(32, channels), channels))


def conv_bn_relu(in_channels: int, out_channels: int, kernel_size: int = 3, dilation: int = 1,
                 norm: str = "bn") -> nn.Module:
    """Conv (no bias) -> BatchNorm (``norm="gn"``: GroupNorm(32)) -> ReLU with "same" padding.

    >>> conv_bn_relu(8, 4)(torch.zeros(1, 8, 5, 5)).shape
    torch.Size([1, 4, 5, 5])
    >>> type(conv_bn_relu(64, 64, norm="gn")[1]).__name__
    'GroupNorm'
    """
    return Conv2dNormActivation(in_channels, out_channels, kernel_size, dilation=dilation,
                                norm_layer=_norm_layer(norm))


def separable_conv_bn_relu(in_channels: int, out_channels: int, dilation: int = 1) -> nn.Sequential:
    """Depthwise 3x3 (dilated) conv-BN-ReLU, then pointwise 1x1 conv-BN-ReLU (DeepLabV3+ style).

    >>> separable_conv_bn_relu(8, 4, dilation=2)(torch.zeros(1, 8, 5, 5)).shape
    torch.Size([1, 4, 5, 5])
    """
    return nn.Sequential(
        Conv2dNormActivation(in_channels, in_channels, 3, dilation=dilation, groups=in_channels),
        Conv2dNormActivation(in_channels, out_channels, 1),
    )


class Classifier(nn.Sequential):
    """Dropout (``dropout_kind`` "channel": Dropout2d, "element": Dropout) then a 1x1 conv from
    ``channels`` to ``num_classes`` logits.

    >>> Classifier(16, 3)(torch.zeros(1, 16, 4, 4)).shape
    torch.Size([1, 3, 4, 4])
    >>> type(Classifier(16, 3, dropout_kind="element")[0]).__name__
    'Dropout'
    """

    def __init__(self, channels: int, num_classes: int, dropout: float = 0.1, dropout_kind: str = "channel"):
        if dropout_kind not in DROPOUT_KINDS:
            raise ValueError(f"dropout_kind must be one of {sorted(DROPOUT_KINDS)}, got {dropout_kind!r}")
        super().__init__(DROPOUT_KINDS[dropout_kind](dropout) if dropout > 0 else nn.Identity(),
                         nn.Conv2d(channels, num_classes, 1))


def check_in_channels(in_channels: list[int], name: str, needed: int = 4) -> list[int]:
    """Raise a clear error unless ``in_channels`` lists the widths of res2..res5."""
    if len(in_channels) < needed or any(int(c) <= 0 for c in in_channels):
        raise ValueError(f"{name}: in_channels must list {needed} positive widths [res2, res3, res4, res5], "
                         f"got {in_channels!r}")
    return [int(c) for c in in_channels]
