"""Deep-stem ResNets from timm as segmentation backbones returning ``[res2, res3, res4, res5]``.

Two families, as the authors' two code bases use them:

- ``resnet50c`` / ``resnet101c``: mmseg's "V1c" (three 3x3 stem convs, 32-32-64), timm's
  ``resnet50c`` / ``resnet101c``. Dilation follows timm's ``output_stride``: the stage that stops
  striding gets dilation d and its first block d/2 (OS8: strides (1, 2, 1, 1), stage dilations
  (1, 1, 2, 4), the first blocks of stages 3 and 4 using 1 and 2) = mmseg's ``contract_dilation``.
- ``resnet52`` / ``resnet103``: Detectron2's DeepLab "R-52" / "R-103" (stem 64-64-128, res2 input
  128 channels, stride in the 3x3 conv, blocks 3-4-6-3 / 3-4-23-3). res5's three blocks always use
  the DeepLab multi-grid (1, 2, 4) in their 3x3 convs: at output stride 32 res5 strides 2 with
  dilations (1, 2, 4); at output stride 16 it has stride 1 and dilations (2, 4, 8). Detectron2's
  DeepLab supports no other output stride (res5 dilation 1 or 2, res4 never dilated), so OS8 is refused.

Inputs of any size are accepted (``size_divisor = 1``); ``pretrained`` takes every format of
:mod:`pna.models.backbones.weights` (timm, mmseg V1c, Detectron2 pickle, a ``timm:`` hub name).
"""
from __future__ import annotations

from pathlib import Path

import timm
from torch import Tensor, nn

from .weights import LoadReport, load_pretrained, require_weights_or_warn

_D2_STEM = {"stem_type": "deep", "stem_width": 64}  # 64-64-128
# name -> (timm model name, extra timm kwargs). resnet18c and resnet10c_half (one block per stage,
# half width: 16-16-32 deep stem, 32..256 channels) are small stand-ins for CPU smoke runs.
RESNETS: dict[str, tuple[str, dict]] = {
    "resnet50c": ("resnet50c", {}),
    "resnet101c": ("resnet101c", {}),
    "resnet52": ("resnet50", _D2_STEM),
    "resnet103": ("resnet101", _D2_STEM),
    "resnet18c": ("resnet18", {"stem_type": "deep", "stem_width": 32}),
    "resnet10c_half": ("resnet10t", {"stem_type": "deep", "stem_width": 16, "channels": (32, 64, 128, 256)}),
}
VALID_OUTPUT_STRIDES = (8, 16, 32)
# Detectron2 DeepLab ResNets: res5 multi-grid and the output strides that code base offers.
RES5_MULTI_GRID: dict[str, tuple[int, ...]] = {"resnet52": (1, 2, 4), "resnet103": (1, 2, 4)}
D2_OUTPUT_STRIDES = (16, 32)


def set_res5_multi_grid(stage: nn.Sequential, base_dilation: int, grid: tuple[int, ...]) -> None:
    """Give block i of ``stage`` the 3x3 dilation (and padding) ``base_dilation * grid[i]``."""
    if len(stage) != len(grid):
        raise ValueError(f"multi-grid {grid} needs {len(grid)} blocks, res5 has {len(stage)}")
    for block, unit in zip(stage, grid):
        dilation = base_dilation * unit
        block.conv2.dilation = block.conv2.padding = (dilation, dilation)


class ResNetBackbone(nn.Module):
    """A timm ResNet returning the four stage outputs (nominal strides 4, 8, 16, 32).

    Example:
        >>> import torch, warnings; warnings.simplefilter("ignore")
        >>> net = ResNetBackbone("resnet18c", output_stride=8)
        >>> [f.shape[-1] for f in net(torch.zeros(1, 3, 64, 64))], net.out_channels, net.size_divisor
        ([16, 8, 8, 8], [64, 128, 256, 512], 1)
    """

    size_divisor = 1  # convolutions take any input size

    def __init__(self, name: str = "resnet50c", output_stride: int = 32, pretrained: str | Path | None = None,
                 allow_random_init: bool = True):
        super().__init__()
        if name not in RESNETS:
            raise ValueError(f"unknown ResNet {name!r}; expected one of {sorted(RESNETS)}")
        valid = D2_OUTPUT_STRIDES if name in RES5_MULTI_GRID else VALID_OUTPUT_STRIDES
        if output_stride not in valid:
            raise ValueError(f"{name}: output_stride must be one of {valid}, got {output_stride}")
        require_weights_or_warn(pretrained, name, allow_random_init)
        timm_name, kwargs = RESNETS[name]
        self.body = timm.create_model(timm_name, pretrained=False, features_only=True, out_indices=(1, 2, 3, 4),
                                      output_stride=output_stride, **kwargs)
        if name in RES5_MULTI_GRID:
            set_res5_multi_grid(self.body.layer4, 32 // output_stride, RES5_MULTI_GRID[name])
        self.name = name
        self.output_stride = output_stride
        self.out_channels: list[int] = list(self.body.feature_info.channels())
        self.strides: list[int] = list(self.body.feature_info.reduction())
        self.weights_report: LoadReport | None = None
        if pretrained is not None:
            self.weights_report = load_pretrained(self.body, pretrained, name, "resnet")

    def forward(self, images: Tensor) -> list[Tensor]:
        return list(self.body(images))


def build_resnet(name: str, output_stride: int = 32, pretrained: str | Path | None = None,
                 allow_random_init: bool = True) -> ResNetBackbone:
    return ResNetBackbone(name, output_stride, pretrained, allow_random_init)
