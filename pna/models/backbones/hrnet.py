"""HRNet-W48 (Wang et al. 2019) from timm as a backbone returning its four branches (strides 4, 8,
16, 32; 48, 96, 192, 384 channels): SegFix's backbone (docs/refiners.md).

timm's ``hrnet_w48`` with ``feature_location=''`` returns the raw branch outputs of the last stage,
which is what the SegFix network concatenates (no classification head is built). Its module names
are those of the official HRNet ImageNet models, so ``hrnetv2_w48_imagenet_pretrained.pth`` (the file
SegFix's authors start from) loads key for key, its classification head reported as unused
(:mod:`pna.models.backbones.weights`; not checked against the real file, which could not be
downloaded here). The fuse layers upsample by fixed factors of 2, so inputs are padded to a
multiple of 32 (``size_divisor``).
"""
from __future__ import annotations

from pathlib import Path

import timm
from torch import Tensor, nn

from .weights import LoadReport, load_pretrained, require_weights_or_warn

HRNETS: dict[str, str] = {"hrnet_w48": "hrnet_w48"}
SIZE_DIVISOR = 32
BRANCHES = (1, 2, 3, 4)  # timm's feature indices of the four branches (0 is the stride-2 stem)


class HRNetBackbone(nn.Module):
    """A timm HRNet returning its four branch outputs.

    Example:
        >>> import torch, warnings; warnings.simplefilter("ignore")
        >>> net = HRNetBackbone("hrnet_w48")
        >>> net.out_channels, net.strides, net.size_divisor
        ([48, 96, 192, 384], [4, 8, 16, 32], 32)
    """

    size_divisor = SIZE_DIVISOR

    def __init__(self, name: str = "hrnet_w48", output_stride: int = 32, pretrained: str | Path | None = None,
                 allow_random_init: bool = True):
        super().__init__()
        if name not in HRNETS:
            raise ValueError(f"unknown HRNet {name!r}; expected one of {sorted(HRNETS)}")
        if output_stride != 32:
            raise ValueError(f"{name}: HRNet keeps every resolution; output_stride must be 32, got {output_stride}")
        require_weights_or_warn(pretrained, name, allow_random_init)
        self.body = timm.create_model(HRNETS[name], pretrained=False, features_only=True, feature_location="",
                                      out_indices=BRANCHES)
        self.name, self.output_stride = name, output_stride
        self.out_channels: list[int] = list(self.body.feature_info.channels())
        self.strides: list[int] = list(self.body.feature_info.reduction())
        self.weights_report: LoadReport | None = None
        if pretrained is not None:
            self.weights_report = load_pretrained(self.body, pretrained, name, "hrnet")

    def forward(self, images: Tensor) -> list[Tensor]:
        h, w = images.shape[-2:]
        if h % SIZE_DIVISOR or w % SIZE_DIVISOR:
            raise ValueError(f"{self.name}: input height and width must be multiples of {SIZE_DIVISOR}, got {h}x{w}")
        return list(self.body(images))


def build_hrnet(name: str, output_stride: int = 32, pretrained: str | Path | None = None,
                allow_random_init: bool = True) -> HRNetBackbone:
    return HRNetBackbone(name, output_stride, pretrained, allow_random_init)
