"""Initial weights of the non-pretrained parts (heads, refinement) as each of the authors' code bases
sets them (docs/authors_settings.md, "Initialisation"; audit (b)5 and (b)6).

``apply_init(model, style)`` after the model is built:

* ``"torch"``: PyTorch's layer defaults, left as they are (the smoke profile).
* ``"mm"`` (MMSegmentation 0.27 + mmcv 1.6): every conv-norm-act block of the coarse and auxiliary
  heads (mmcv ``ConvModule``) gets kaiming-normal (fan_out, ReLU gain), bias 0; the semantic-FPN
  neck's plain convs xavier-uniform, bias 0; the auxiliary classifier normal(0, 0.01), bias 0. The
  coarse classifier gets normal(0, 0.01) only without a cascade: the authors' cascade segmentor
  (PNA, PointRend) keeps its decode heads in a plain ``nn.ModuleList``, which mmcv's
  ``init_weights`` never enters, so that classifier and the whole PNA head keep PyTorch defaults.
  PointRend's point MLP (ConvModules) is kaiming-initialised, its classifier left as it is.
* ``"d2"`` (Detectron2 and the authors' PNA head there): the PNA query/value embeddings
  ``c2_xavier_fill``, the PNA MLP ``c2_msra_fill``, the stage classifiers normal(0, 0.001) with bias
  0; the DeepLabV3 (ASPP) convs ``c2_xavier_fill`` and its predictor normal(0, 0.001); the semantic
  FPN head's convs and predictor ``c2_msra_fill`` and the FPN neck ``c2_xavier_fill``; PointRend's
  point MLP ``c2_msra_fill`` and its predictor normal(0, 0.001). The NAM linears, the SAM and the
  LayerNorms keep PyTorch defaults in both code bases.

fvcore's fills are used as they are: ``c2_xavier_fill`` is ``kaiming_uniform_(a=1)`` (std
1/sqrt(fan_in)) and ``c2_msra_fill`` is ``kaiming_normal_(mode="fan_out", nonlinearity="relu")``
(std sqrt(2/fan_out)), both with bias 0; mmcv's ``kaiming_init`` defaults are the latter call too.

Example:
    >>> conv = nn.Conv2d(64, 32, 1)
    >>> _ = normal_fill(conv, 0.001)
    >>> round(conv.weight.std().item(), 4), conv.bias.abs().max().item()
    (0.001, 0.0)
"""
from __future__ import annotations

import warnings
from typing import Callable, Iterable

from torch import nn
from torchvision.ops import Conv2dNormActivation

INIT_STYLES = ("torch", "mm", "d2")
MM_CLASSIFIER_STD = 0.01  # BaseDecodeHead's init_cfg Normal(std=0.01) on conv_seg
D2_CLASSIFIER_STD = 0.001  # the authors' PNA stage classifiers, Detectron2's DeepLab/PointRend predictors

Fill = Callable[[nn.Module], None]


def normal_fill(module: nn.Module, std: float) -> nn.Module:
    """weight ~ normal(0, std), bias 0."""
    nn.init.normal_(module.weight, 0.0, std)
    if module.bias is not None:
        nn.init.zeros_(module.bias)
    return module


def kaiming_fan_out(module: nn.Module) -> None:
    """mmcv's ``kaiming_init`` as ConvModule calls it: kaiming-normal, fan_out, ReLU gain, bias 0."""
    nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def xavier_uniform(module: nn.Module) -> None:
    """mmcv's ``xavier_init(distribution="uniform")``: gain 1, bias 0 (MMSeg's FPN neck)."""
    nn.init.xavier_uniform_(module.weight)
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def _convs(modules: Iterable[nn.Module]) -> list[nn.Module]:
    return [m for m in modules if isinstance(m, (nn.Conv1d, nn.Conv2d))]


def _conv_norm_act_convs(module: nn.Module) -> list[nn.Module]:
    """The conv of every conv-norm-act block (our ``conv_bn_relu``, mmcv's ConvModule) in ``module``."""
    return [block[0] for block in module.modules() if isinstance(block, Conv2dNormActivation)]


def _fill(modules: Iterable[nn.Module], fill: Fill) -> None:
    for m in modules:
        fill(m)


def _init_mm(model: nn.Module) -> None:
    head, aux = model.head, getattr(model, "aux_head", None)
    cascade = getattr(model, "refine", None) is not None or hasattr(model, "pointrend")
    _fill(_conv_norm_act_convs(head), kaiming_fan_out)
    if hasattr(head, "fpn"):
        _fill(_convs(head.fpn.modules()), xavier_uniform)
    if not cascade:
        normal_fill(head.classifier[-1], MM_CLASSIFIER_STD)
    if aux is not None:
        _fill(_conv_norm_act_convs(aux), kaiming_fan_out)
        normal_fill(aux.classifier[-1], MM_CLASSIFIER_STD)
    if hasattr(model, "pointrend"):
        _fill(_convs(model.pointrend.point_head.fcs.modules()), kaiming_fan_out)


def _init_d2(model: nn.Module) -> None:
    with warnings.catch_warnings():  # fvcore.nn's package import touches torch.jit.script (deprecated)
        warnings.filterwarnings("ignore", category=FutureWarning)
        from fvcore.nn.weight_init import c2_msra_fill, c2_xavier_fill

    head = model.head
    if hasattr(head, "aspp"):  # Detectron2's DeepLabV3 head
        _fill(_convs(head.aspp.modules()), c2_xavier_fill)
        normal_fill(head.classifier[-1], D2_CLASSIFIER_STD)
    if hasattr(head, "fpn"):  # Detectron2's semantic FPN head over its FPN neck
        _fill(_convs(head.fpn.modules()), c2_xavier_fill)
        _fill(_convs(head.scale_heads.modules()), c2_msra_fill)
        c2_msra_fill(head.classifier[-1])
    refine = getattr(model, "refine", None)
    for stage in getattr(refine, "stages", ()):
        c2_xavier_fill(stage.query)
        c2_xavier_fill(stage.value)
        c2_msra_fill(stage.mlp.fc1)
        c2_msra_fill(stage.mlp.fc2)
        normal_fill(stage.classifier, D2_CLASSIFIER_STD)
    if hasattr(model, "pointrend"):
        _fill(_convs(model.pointrend.point_head.fcs.modules()), c2_msra_fill)
        normal_fill(model.pointrend.point_head.classifier, D2_CLASSIFIER_STD)


def apply_init(model: nn.Module, style: str) -> nn.Module:
    """Initialise ``model``'s heads and refinement the way code base ``style`` does (in place)."""
    if style not in INIT_STYLES:
        raise ValueError(f"init must be one of {INIT_STYLES}, got {style!r}")
    if style == "mm":
        _init_mm(model)
    elif style == "d2":
        _init_d2(model)
    return model
