"""AdamW (or SGD with momentum) with parameter groups and the poly learning-rate schedule with linear warmup.

Example::

    >>> import torch
    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    >>> opt = build_optimizer(model, lr=1e-4, weight_decay=0.01)
    >>> [g["weight_decay"] for g in opt.param_groups]
    [0.01, 0.0]
    >>> sched = build_scheduler(opt, total_iters=100, warmup_iters=10, warmup_ratio=0.1, power=0.9)
"""
from __future__ import annotations

import torch
from torch import nn

_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm)
# Parameters by name that are no weight matrices: relative position bias tables, position
# embeddings, attention temperatures. Decaying them towards zero only hurts.
_NO_DECAY_WORDS = ("bias_table", "relative_position", "rpb", "pos_embed", "absolute_pos", "temperature")
# The authors' MMSeg configs exempt parameters by name: 'norm' (their LayerNorms: the PNA head's,
# the SAM's and Swin's; their BatchNorms are named 'bn' and DO decay), 'rpb', position embeddings
# and Swin's relative position bias tables. Conv/linear biases and the SAM temperature decay.
_MM_NO_DECAY_WORDS = ("rpb", "relative_position_bias_table", "pos_embed")
DECAY_RULES = ("default", "mm", "d2", "all")
OPTIMIZERS = ("adamw", "sgd")


def _sam_prefixes(model: nn.Module) -> tuple[str, ...]:
    from pna.models.sam import SelfAggregation  # models import optim-free code only; no cycle

    return tuple(f"{name}." for name, m in model.named_modules() if isinstance(m, SelfAggregation))


def no_decay_names(model: nn.Module, rule: str = "default") -> set[str]:
    """Names of parameters that get no weight decay under ``rule``:

    - ``default``: norms, biases, bias tables, embeddings, temperatures (the smoke runs);
    - ``mm``: the authors' MMSeg rows: LayerNorms, ``rpb``, position embeddings and relative
      position bias tables (BatchNorms and biases decay);
    - ``d2``: the authors' Detectron2 rows: every normalisation layer (BatchNorm, GroupNorm,
      LayerNorm) except the SAM's channel LayerNorm, whose class Detectron2's norm-type check does
      not recognise in their code; ``rpb``, biases and the temperature decay.
    - ``all``: none (every parameter decays: SegFix's openseg trainer, one group, docs/refiners.md).
    """
    if rule not in DECAY_RULES:
        raise ValueError(f"weight-decay rule must be one of {DECAY_RULES}, got {rule!r}")
    if rule == "all":
        return set()
    sam = _sam_prefixes(model) if rule == "d2" else ()
    names = set()
    for module_name, module in model.named_modules():
        is_norm = isinstance(module, _NORMS) or "norm" in type(module).__name__.lower()
        for name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            if rule == "default":
                skip = is_norm or name == "bias" or param.ndim <= 1 or any(w in full for w in _NO_DECAY_WORDS)
            elif rule == "mm":
                skip = isinstance(module, nn.LayerNorm) or any(w in full for w in _MM_NO_DECAY_WORDS)
            else:
                skip = is_norm and not full.startswith(sam)
            if skip:
                names.add(full)
    return names


def build_optimizer(model: nn.Module, lr: float, weight_decay: float,
                    betas: tuple[float, float] = (0.9, 0.999), decay_rule: str = "default",
                    optimizer: str = "adamw", momentum: float = 0.9) -> torch.optim.Optimizer:
    """AdamW (``optimizer="sgd"``: SGD with ``momentum``, no Nesterov) with two groups: decayed
    weights, and the parameters ``no_decay_names(model, decay_rule)``.

    The fused implementation (one kernel over all tensors) is used: on a CPU it is ~5x faster
    than the per-tensor loop, which matters for the smoke runs.
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    skip = no_decay_names(model, decay_rule)
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if name in skip else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    if optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, fused=True)
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True)


def poly_factor(step: int, total_iters: int, warmup_iters: int = 0, warmup_ratio: float = 1e-6,
                power: float = 0.9, min_factor: float = 0.0) -> float:
    """lr multiplier at `step`: poly decay (1 - step/total)^power, linear warmup before it."""
    progress = min(step, total_iters) / max(total_iters, 1)
    factor = (1 - min_factor) * (1 - progress) ** power + min_factor
    if step < warmup_iters:
        # Linear warmup that meets the poly curve at the end of the warmup (mmcv convention).
        factor *= 1 - (1 - step / warmup_iters) * (1 - warmup_ratio)
    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, total_iters: int, warmup_iters: int = 0,
                    warmup_ratio: float = 1e-6, power: float = 0.9,
                    min_lr: float = 0.0) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per iteration (its state_dict holds the position for resuming)."""
    base = optimizer.param_groups[0]["lr"]
    min_factor = min_lr / base if base > 0 else 0.0
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: poly_factor(step, total_iters, warmup_iters, warmup_ratio, power, min_factor))
