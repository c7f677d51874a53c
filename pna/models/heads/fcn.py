"""FCN head (mmseg conventions) and the auxiliary FCN head on res4."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ._common import Classifier, conv_bn_relu


class FCNHead(nn.Module):
    """``num_convs`` 3x3 conv-BN-ReLU on ``feats[in_index]``, optional concat of the input, classifier.

    Defaults are the paper's FCN head on res5: 2048 -> 512 -> 512, concat conv (2048 + 512 -> 512),
    dropout 0.1, 1x1 classifier.

    Example:
        >>> head = FCNHead(in_channels=64, num_classes=3, channels=8)
        >>> head([torch.zeros(1, 64, 4, 4)]).shape
        torch.Size([1, 3, 4, 4])
    """

    def __init__(self, in_channels: int, num_classes: int, channels: int = 512, num_convs: int = 2,
                 concat_input: bool = True, dropout: float = 0.1, in_index: int = -1):
        super().__init__()
        if num_convs < 1:
            raise ValueError(f"num_convs must be >= 1, got {num_convs}")
        widths = [in_channels] + [channels] * num_convs
        self.convs = nn.Sequential(*[conv_bn_relu(a, b) for a, b in zip(widths[:-1], widths[1:])])
        self.concat = conv_bn_relu(in_channels + channels, channels) if concat_input else None
        self.in_index = in_index
        self.classifier = Classifier(channels, num_classes, dropout)

    def forward(self, feats: list[Tensor]) -> Tensor:
        x = feats[self.in_index]
        y = self.convs(x)
        if self.concat is not None:
            y = self.concat(torch.cat([x, y], dim=1))
        return self.classifier(y)


def build_fcn_head(in_channels: list[int], num_classes: int, channels: int | None = None, **kwargs) -> FCNHead:
    """The coarse FCN head on the last feature (res5)."""
    return FCNHead(in_channels[-1], num_classes, channels=channels or 512, **kwargs)


def build_aux_fcn_head(in_channels: list[int], num_classes: int, channels: int | None = None,
                       **kwargs) -> FCNHead:
    """The auxiliary FCN head on res4: one 3x3 conv (-> 256), no concat, dropout 0.1."""
    return FCNHead(in_channels[-2], num_classes, channels=channels or 256, num_convs=1,
                   concat_input=False, in_index=-2, **kwargs)
