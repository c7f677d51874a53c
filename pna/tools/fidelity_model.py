"""Measurements of a built paper-profile model for the fidelity report: widths, strides and
dilations of the backbone, the heads and the refinement, the initial weight statistics, the coarse
head's passes per training step, the input size divisor and the weight decay of each parameter kind
in the built optimiser. One build per (model, overrides, classes, optimiser) and row group; only
the measured facts are kept.

Initialisation is recognised by the weight std of each layer against each formula's std (within
:data:`INIT_TOLERANCE`) and by its bias (0 for every fill but PyTorch's default):

    >>> import torch
    >>> conv = torch.nn.Conv2d(256, 128, 1)
    >>> init_kind([conv])
    'torch default'
    >>> _ = torch.nn.init.kaiming_uniform_(conv.weight, a=1); _ = torch.nn.init.zeros_(conv.bias)
    >>> init_kind([conv])
    'kaiming-uniform a=1'
"""
from __future__ import annotations

import functools
import json
import math
import warnings
from typing import Any, Callable

import torch
from torch import nn

from pna.tools.fidelity_expect import MSRA, NORMAL_0001, NORMAL_001, TORCH, XAVIER_C2, XAVIER_UNIFORM

# A sample std of n weights is within ~3/sqrt(2n) of the true one: 10 % covers layers of >= 500 weights.
INIT_TOLERANCE = 0.1
PROBE_SIZE = 64  # the input side of the forward passes that measure strides and coarse-head passes
# Each formula's weight std from the layer's fans, and whether its bias is zero.
_FORMULAS: dict[str, tuple[Callable[[int, int], float], bool]] = {
    TORCH: (lambda fan_in, fan_out: 1 / math.sqrt(3 * fan_in), False),
    XAVIER_C2: (lambda fan_in, fan_out: 1 / math.sqrt(fan_in), True),
    MSRA: (lambda fan_in, fan_out: math.sqrt(2 / fan_out), True),
    XAVIER_UNIFORM: (lambda fan_in, fan_out: math.sqrt(2 / (fan_in + fan_out)), True),
    NORMAL_001: (lambda fan_in, fan_out: 0.01, True),
    NORMAL_0001: (lambda fan_in, fan_out: 0.001, True),
}


def _fans(module: nn.Module) -> tuple[int, int]:
    w = module.weight
    receptive = w[0, 0].numel() if w.dim() > 2 else 1
    return w.shape[1] * receptive, w.shape[0] * receptive


def init_kind(modules: list[nn.Module]) -> str | None:
    """The initialisation formula(s) every module of ``modules`` agrees with, " | "-joined; None
    when there is no module, "none" when no formula fits."""
    if not modules:
        return None
    kinds = set(_FORMULAS)
    for module in modules:
        fan_in, fan_out = _fans(module)
        std = module.weight.detach().float().std().item()
        bias_zero = module.bias is None or bool((module.bias == 0).all())
        kinds &= {name for name, (formula, zero_bias) in _FORMULAS.items()
                  if abs(std - formula(fan_in, fan_out)) <= INIT_TOLERANCE * formula(fan_in, fan_out)
                  and (module.bias is None or bias_zero == zero_bias)}
    return " | ".join(sorted(kinds)) or "none"


def init_figure(module: nn.Module) -> tuple[float, str]:
    """(weight std, "formula std") of one layer: the measured figure beside the matched formula's."""
    fan_in, fan_out = _fans(module)
    std = module.weight.detach().float().std().item()
    kind = (init_kind([module]) or "none").split(" | ")[0]
    formula = f"{kind}: {_FORMULAS[kind][0](fan_in, fan_out):.5f}" if kind in _FORMULAS else "no formula fits"
    return round(std, 5), formula


def _init_figures(model: nn.Module) -> tuple[tuple[str, float, str], ...]:
    head, aux, refine = model.head, getattr(model, "aux_head", None), getattr(model, "refine", None)
    layers = {"coarse conv": next((m for m in head.modules() if isinstance(m, nn.Conv2d)), None),
              "coarse classifier": head.classifier[-1],
              "aux classifier": None if aux is None else aux.classifier[-1]}
    if refine is not None and hasattr(refine, "stages"):
        stage = refine.stages[-1]  # the res2 stage
        layers.update({"PNA query": stage.query, "PNA MLP fc1": stage.mlp.fc1, "PNA classifier": stage.classifier})
    return tuple((name, *init_figure(m)) for name, m in layers.items() if m is not None)


def _build(model: str, overrides: dict, num_classes: int) -> nn.Module:
    from pna.models import create_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random backbone init: only the heads' init is measured
        return create_model(model, num_classes, **{**overrides, "pretrained": None})


def _backbone(net: nn.Module, feats: list[torch.Tensor]) -> dict:
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    stem = tuple(c.out_channels for c in convs[:3]) if convs[0].kernel_size == (3, 3) else None
    res5 = feats[-1]
    res5_convs = [m for n, m in net.named_modules() if isinstance(m, nn.Conv2d) and "layer4" in n
                  and m.kernel_size == (3, 3) and m.groups == 1]
    drop = [m.drop_prob for m in net.modules() if hasattr(m, "drop_prob")]  # timm DropPath
    return {"stem_widths": stem, "output_stride": PROBE_SIZE // res5.shape[-1],
            "dilations": tuple(c.dilation[0] for c in res5_convs) or None,
            "drop_path": round(max(drop), 6) if drop else None}


def _head(head: nn.Module, head_name: str, aux: nn.Module | None) -> dict:
    dropout = head.classifier[0]
    aspp = getattr(head, "aspp", None)
    norms = {"BN" if isinstance(m, nn.BatchNorm2d) else "GN" for m in head.modules()
             if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))}
    ppm = getattr(head, "ppm", None)
    return {
        "coarse_head": head_name, "head_channels": head.classifier[-1].in_channels,
        "aspp_dilations": None if aspp is None or head_name != "aspp" else tuple(
            1 if b[0].kernel_size == (1, 1) else b[0].dilation[0] for b in aspp.branches[1:]),
        "head_dropout": None if isinstance(dropout, nn.Identity) else (
            "channel" if isinstance(dropout, nn.Dropout2d) else "element", dropout.p),
        "norm_layer_head": " + ".join(sorted(norms)) or None,
        "psp_pool_scales": None if ppm is None else tuple(s[0].output_size for s in ppm.stages),
        "aux_head": None if aux is None else aux.classifier[-1].in_channels,
    }


def _refine(refine: nn.Module | None) -> dict:
    if refine is None or not hasattr(refine, "stages"):
        return {}
    stages = list(refine.stages)[::-1]  # res2..res5, as the audit lists them
    return {
        "pna_window": stages[0].nam.window_size if len({s.nam.window_size for s in stages}) == 1 else None,
        "pna_resize_mode": stages[0].resize_mode, "pna_embed_dims": tuple(s.query.out_channels for s in stages),
        "pna_embed_bias": stages[0].query.bias is not None, "pna_uses_sam": not isinstance(stages[0].sam, nn.Identity),
        "pna_heads": tuple(s.nam.num_heads for s in stages),
        "pna_mlp_ratio": stages[0].mlp.fc1.out_features / stages[0].mlp.fc1.in_features,
        "init_pna_head": (init_kind([m for s in stages for m in (s.query, s.value)]),
                          init_kind([m for s in stages for m in (s.mlp.fc1, s.mlp.fc2)]),
                          init_kind([s.classifier for s in stages])),
    }


def _init_heads(model: nn.Module) -> tuple[str | None, ...]:
    head, aux = model.head, getattr(model, "aux_head", None)
    neck = list(head.fpn.modules()) if hasattr(head, "fpn") else []
    skip = {id(m) for m in neck} | {id(head.classifier[-1])}
    convs = [m for m in head.modules() if isinstance(m, nn.Conv2d) and id(m) not in skip]
    return (init_kind(convs), init_kind([head.classifier[-1]]),
            None if aux is None else init_kind([aux.classifier[-1]]),
            init_kind([m for m in neck if isinstance(m, nn.Conv2d)]) or None)


def coarse_passes(model: nn.Module, feats: list[torch.Tensor] | None = None) -> tuple[int, tuple[str, ...]]:
    """How often the coarse head runs in one training forward (a hook counts it), and the dense
    outputs that forward returns; ``feats``: the backbone's features of the probe batch, given to
    spare a second backbone pass."""
    calls = []
    handle = model.head.register_forward_hook(lambda *_: calls.append(1))
    if feats is not None:
        model.backbone.forward = lambda images: feats  # an instance attribute over the class's method
    try:
        outputs = model.train()(torch.randn(2, 3, PROBE_SIZE, PROBE_SIZE))
    finally:
        handle.remove()
        if feats is not None:
            del model.backbone.forward
    return len(calls), tuple(name for name in outputs if name != "points")  # PointRend's points: their own loss


def _kind(name: str, module: nn.Module, sam_prefixes: tuple[str, ...]) -> str | None:
    """The parameter kind the audit's weight-decay rules speak of."""
    if "rpb" in name:
        return "rpb"
    if "temperature" in name:
        return "temperature"
    if "relative_position_bias_table" in name:
        return "Swin position bias"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return "BatchNorm"
    if isinstance(module, nn.GroupNorm):
        return "GroupNorm"
    if isinstance(module, nn.LayerNorm):
        return ("LayerNorm (SAM)" if name.startswith(sam_prefixes) else
                "LayerNorm (PNA)" if name.startswith("refine.") else "LayerNorm (Swin)")
    return "bias" if name.endswith(".bias") and isinstance(module, (nn.Conv2d, nn.Linear, nn.Conv1d)) else None


def decay_table(model: nn.Module, optim: tuple) -> dict:
    """The built optimiser: its class, lr, betas, weight decay, and per parameter kind whether it decays."""
    from pna.engine.optim import build_optimizer
    from pna.models.sam import SelfAggregation

    lr, weight_decay, betas, rule = optim
    optimizer = build_optimizer(model, lr, weight_decay, betas, rule)
    decays = {id(p): g["weight_decay"] > 0 for g in optimizer.param_groups for p in g["params"]}
    sam = tuple(f"{n}." for n, m in model.named_modules() if isinstance(m, SelfAggregation))
    kinds: dict[str, set] = {}
    for module_name, module in model.named_modules():
        for pname, param in module.named_parameters(recurse=False):
            kind = _kind(f"{module_name}.{pname}", module, sam)
            if kind is not None:
                kinds.setdefault(kind, set()).add(decays[id(param)])
    groups = optimizer.param_groups
    return {"optimizer": type(optimizer).__name__, "lr": groups[0]["lr"], "betas": tuple(groups[0]["betas"]),
            "weight_decay": max(g["weight_decay"] for g in groups),
            "paramwise_rules": tuple(sorted((k, v.pop() if len(v) == 1 else "mixed") for k, v in kinds.items()))}


def shifted_window_order(backbone: nn.Module) -> str | None:
    """A Swin backbone's shifted-window order, measured: row 0 of a 16x16 map (padded to 21 by a
    window of 7) is changed and the rows it reaches through one shifted block are listed. Padded first
    and then rolled by 3 (MMSeg), it shares its window and region with rows 1-2 only; rolled first,
    with rows 10-15 too. None for a backbone without shifted windows."""
    blocks = [b for layer in getattr(getattr(backbone, "body", None), "layers", []) for b in layer.blocks
              if any(getattr(b, "shift_size", ()))]
    if not blocks:
        return None
    block, g = blocks[0].eval(), torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, 16, block.norm1.normalized_shape[0], generator=g)
    y = x.clone()
    y[:, 0] = torch.randn(y[:, 0].shape, generator=g)
    reached = ((block(x) - block(y)).abs().amax(dim=(0, 2, 3)) > 1e-6).nonzero().flatten().tolist()
    return "pad, then roll" if reached == [0, 1, 2] else f"roll, then pad (row 0 reaches rows {reached})"


@functools.lru_cache(maxsize=None)
def model_facts(model: str, overrides_json: str, num_classes: int, optim: tuple) -> dict[str, Any]:
    """Every model measurement of the report for one built model (cached by its arguments)."""
    from pna.models import get_spec
    from pna.models.segmentor import size_divisor

    overrides = json.loads(overrides_json)
    spec = get_spec(model, **overrides)
    torch.manual_seed(0)
    net = _build(model, overrides, num_classes)
    with torch.no_grad():  # one backbone pass (eval mode) for the strides and the coarse-head count
        feats = net.backbone.eval()(torch.randn(2, 3, PROBE_SIZE, PROBE_SIZE))
        facts = {"backbone": spec.backbone, **_backbone(net.backbone, feats),
                 **_head(net.head, spec.head, net.aux_head), **_refine(net.refine), "init_heads": _init_heads(net),
                 "init_figures": _init_figures(net), "swin_shifted_windows": shifted_window_order(net.backbone),
                 "size_divisibility": size_divisor(net), **decay_table(net, optim)}
        facts["coarse_head_runs_in_training"], facts["dense_outputs"] = coarse_passes(net, feats)
    return facts
