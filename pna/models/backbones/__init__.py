"""Backbones: ``build_backbone(name, output_stride, pretrained)`` -> module returning
``[res2, res3, res4, res5]`` (nominal strides 4, 8, 16, 32) with ``.out_channels``, ``.strides`` and
``.size_divisor`` (the input sides it takes as they are; the segmentor pads other sizes).

Names: ``resnet50c`` / ``resnet101c`` (mmseg V1c), ``resnet52`` / ``resnet103`` (Detectron2 DeepLab
R-52 / R-103), ``swin_t`` / ``swin_b``, ``hrnet_w48`` (SegFix's), and the smoke stand-ins
``resnet18c`` / ``resnet10c_half``.
Weights: :mod:`pna.models.backbones.weights` (formats, ``resolve_pretrained``, file names).

Add a family by putting its builders into ``BACKBONES`` (``name -> builder(name, output_stride,
pretrained)``), e.g. from a new module imported below.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

from torch import nn

from .hrnet import HRNETS, HRNetBackbone, build_hrnet
from .resnet import RESNETS, ResNetBackbone, build_resnet
from .swin import SWINS, SwinBackbone, build_swin
from .weights import WEIGHT_FILES, LoadReport, WeightsError, load_pretrained, resolve_pretrained

BACKBONES: dict[str, Callable[..., nn.Module]] = {name: partial(build_resnet, name) for name in RESNETS}
BACKBONES.update({name: partial(build_swin, name) for name in SWINS})
BACKBONES.update({name: partial(build_hrnet, name) for name in HRNETS})  # SegFix's backbone


def list_backbones() -> list[str]:
    return sorted(BACKBONES)


def build_backbone(name: str, output_stride: int = 32, pretrained: str | Path | None = None,
                   allow_random_init: bool = True) -> nn.Module:
    """Build a backbone by name; ``pretrained`` is None (random init), a weights file or a hub name.

    Random init is warned about, or refused with ``allow_random_init=False`` (except for the smoke
    backbones, which have no pretrained weights).

    Example:
        >>> import warnings, torch; warnings.simplefilter("ignore")
        >>> net = build_backbone("resnet18c", output_stride=32)
        >>> [tuple(f.shape[1:]) for f in net(torch.zeros(1, 3, 64, 64))]
        [(64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)]
    """
    if name not in BACKBONES:
        from pna.errors import unknown_name_error
        raise unknown_name_error("backbone", name, list_backbones(), "pna.models.list_backbones()")
    return BACKBONES[name](output_stride=output_stride, pretrained=pretrained, allow_random_init=allow_random_init)


__all__ = ["BACKBONES", "WEIGHT_FILES", "HRNetBackbone", "LoadReport", "ResNetBackbone", "SwinBackbone", "WeightsError",
           "build_backbone", "list_backbones", "load_pretrained", "resolve_pretrained"]
