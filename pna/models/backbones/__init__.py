"""Backbones: ``build_backbone(name, output_stride, pretrained)`` -> module returning
``[res2, res3, res4, res5]`` (nominal strides 4, 8, 16, 32) with ``.out_channels``.

Add a family by putting its builders into ``BACKBONES`` (``name -> builder(name, output_stride,
pretrained)``), e.g. from a new module imported below.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Callable

from torch import nn

from .resnet import RESNETS, ResNetBackbone, build_resnet
from .swin import SWINS, SwinBackbone, build_swin

BACKBONES: dict[str, Callable[..., nn.Module]] = {name: partial(build_resnet, name) for name in RESNETS}
BACKBONES.update({name: partial(build_swin, name) for name in SWINS})


def list_backbones() -> list[str]:
    return sorted(BACKBONES)


def build_backbone(name: str, output_stride: int = 32, pretrained: str | Path | None = None) -> nn.Module:
    """Build a backbone by name; ``pretrained`` is None (random init, warned) or a local weights file.

    Example:
        >>> import warnings, torch; warnings.simplefilter("ignore")
        >>> net = build_backbone("resnet18c", output_stride=32)
        >>> [tuple(f.shape[1:]) for f in net(torch.zeros(1, 3, 64, 64))]
        [(64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)]
    """
    if name not in BACKBONES:
        from pna.cli import unknown_name_error
        raise unknown_name_error("backbone", name, list_backbones(), "pna.models.list_backbones()")
    return BACKBONES[name](output_stride=output_stride, pretrained=pretrained)


__all__ = ["BACKBONES", "ResNetBackbone", "SwinBackbone", "build_backbone", "list_backbones"]
