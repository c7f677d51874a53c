"""``create_model(name, num_classes, **overrides)``: the one factory from a table row to a Segmentor."""
from __future__ import annotations

import dataclasses
from typing import Any

from torch import nn

from .backbones import build_backbone
from .heads import build_aux_head, build_head
from .init import INIT_STYLES, apply_init
from .pointrend import PointRend, PointRendSegmentor, fine_channels_of
from .refine import ProgressiveRefinement
from .segfix import SEGFIX_HEAD, SegFixHead, SegFixNet
from .segmentor import Segmentor
from .registry import MODELS, ModelSpec

REFINE_KINDS = (None, "nam", "nam+sam", "pointrend")


def list_models() -> list[str]:
    return sorted(MODELS)


def get_spec(name: str, **overrides: Any) -> ModelSpec:
    """The row's spec with ``overrides`` applied; unknown names and fields raise ValueError."""
    if name not in MODELS:
        from pna.errors import unknown_name_error
        raise unknown_name_error("model", name, list_models(), "pna.models.list_models()")
    fields = [f.name for f in dataclasses.fields(ModelSpec)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"unknown override(s) {unknown} for model {name!r}; valid overrides are {fields}")
    if "embed_dims" in overrides:
        overrides["embed_dims"] = tuple(overrides["embed_dims"])
    spec = dataclasses.replace(MODELS[name], **overrides)
    if spec.refine not in REFINE_KINDS:
        raise ValueError(f"refine must be one of {REFINE_KINDS}, got {spec.refine!r}")
    if spec.init not in INIT_STYLES:
        raise ValueError(f"model {name!r}: init must be one of {INIT_STYLES}, got {spec.init!r}")
    return spec


def build_from_spec(spec: ModelSpec, num_classes: int) -> Segmentor | SegFixNet:
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    backbone = build_backbone(spec.backbone, spec.output_stride, spec.pretrained)
    channels = list(backbone.out_channels)
    if spec.head == SEGFIX_HEAD:  # predicts boundaries and directions, whatever the classes
        head = SegFixHead(channels, spec.head_channels or 256)
        return apply_init(SegFixNet(backbone, head, spec.size_divisibility), spec.init)
    head = build_head(spec.head, channels, num_classes, channels=spec.head_channels, **spec.head_kwargs)
    refine: nn.Module | None = None
    if spec.refine == "pointrend":
        refine = PointRend(fine_channels_of(head, channels), num_classes, channels=spec.point_head_channels)
    elif spec.refine is not None:
        refine = ProgressiveRefinement(channels, num_classes, spec.embed_dims, spec.head_dim, spec.window_size,
                                       use_sam=spec.refine == "nam+sam", resize_mode=spec.resize_mode,
                                       impl=spec.na_impl, embed_bias=spec.embed_bias)
    aux = build_aux_head("fcn", channels, num_classes, channels=spec.aux_channels) if spec.aux else None
    if isinstance(refine, PointRend):
        model = PointRendSegmentor(backbone, head, refine, aux, size_divisibility=spec.size_divisibility)
    else:
        model = Segmentor(backbone, head, refine, aux, coarse_twice=spec.coarse_twice,
                          size_divisibility=spec.size_divisibility)
    return apply_init(model, spec.init)


def create_model(name: str, num_classes: int, **overrides: Any) -> Segmentor:
    """Build a table row by name, e.g. ``create_model("fcn_r50_os32_pna", 21, window_size=7)``.

    Example:
        >>> import warnings, torch; warnings.simplefilter("ignore")
        >>> model = create_model("fcn_r50_os32_pna", 5, backbone="resnet18c", embed_dims=(64, 32, 32, 32),
        ...                      head_channels=16, window_size=3).train()
        >>> {k: tuple(v.shape) for k, v in model(torch.zeros(2, 3, 64, 64)).items()}["P4"]
        (2, 5, 16, 16)
    """
    return build_from_spec(get_spec(name, **overrides), num_classes)
