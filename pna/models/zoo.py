"""The model rows of the paper's tables, as declarative specs. Adding a row is one line in MODELS."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelSpec:
    """Everything ``create_model`` needs besides ``num_classes``; every field can be overridden.

    backbone: a name of ``pna.models.backbones.BACKBONES``; pretrained: None or a local weights file.
    head: a name of ``pna.models.heads.HEADS``; head_channels None = the head's default width;
    head_kwargs: further head arguments. refine: None, "nam" (NAM only) or "nam+sam".
    aux: an auxiliary FCN head on res4 (aux_channels wide), run in training only.
    """

    backbone: str = "resnet50c"
    output_stride: int = 32
    pretrained: str | None = None
    head: str = "fcn"
    head_channels: int | None = None
    head_kwargs: dict[str, Any] = field(default_factory=dict)
    refine: str | None = None
    window_size: int = 9
    embed_dims: tuple[int, ...] = (768, 384, 192, 96)
    head_dim: int = 32
    resize_mode: str = "nearest"
    na_impl: str = "auto"
    aux: bool = True
    aux_channels: int = 256


MODELS: dict[str, ModelSpec] = {
    # Table 1 (VOC, ResNet-50, L = 9)
    "fcn_r50_os32": ModelSpec(head="fcn", output_stride=32),
    "fcn_r50_os8": ModelSpec(head="fcn", output_stride=8),
    "fcn_r50_os32_pna_nam": ModelSpec(head="fcn", refine="nam"),
    "fcn_r50_os32_pna": ModelSpec(head="fcn", refine="nam+sam"),
}
