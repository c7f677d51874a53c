"""The authors' values, read from the audit's text (``docs/authors_audit.csv``) into the form our
measurements take (:mod:`pna.tools.fidelity_model`, :mod:`pna.tools.fidelity_pipeline`), one reader per check.

A reader gets the audit lines its check names (``None`` where the group has no such line) and
returns the expected value; text it does not understand raises :class:`NotUnderstood`, which the
report lists as an unexplained difference, so that a changed audit line cannot pass silently.
Readers of descriptive lines (initialisation, weight-decay rules, padding) key on the phrases the
audit uses and refuse a line that lacks them.

Example::

    >>> from pna.tools.audit import AuditLine
    >>> line = AuditLine("g", "crop_size", "512x1024 absolute (min(crop, image) per side)", "s", "")
    >>> EXPECT["crop_size"]({"crop_size": line})
    (512, 1024)
"""
from __future__ import annotations

import re
from typing import Any, Callable

from pna.tools.audit_text import (  # noqa: F401 (the names the readers' users share)
    MEAN_ALL, MEAN_VALID, MSRA, NORMAL_0001, NORMAL_001, TORCH, XAVIER_C2, XAVIER_UNIFORM, Lines, NotUnderstood,
    fail, first_int, group, ints, is_none, need, numbers, text_of, top_k)

def backbone(lines: Lines) -> str:
    text = text_of(lines, "backbone")
    names = (("ResNetV1c-50", "resnet50c"), ("ResNetV1c-101", "resnet101c"), ("R-52", "resnet52"),
             ("R-103", "resnet103"), ("embed_dims 96", "swin_t"), ("embed_dims 128", "swin_b"))
    for phrase, name in names:
        if phrase in text:
            return name
    raise NotUnderstood(f"unknown backbone {text!r}")


def stem(lines: Lines) -> tuple[int, ...] | None:
    text = text_of(lines, "stem_widths")
    if "patch embedding" in text:
        return None
    match = re.search(r"(\d+)-(\d+)-(\d+)", text) or re.search(r"convs (\d+) \(stride 2\), (\d+), (\d+)", text)
    return tuple(int(x) for x in match.groups()) if match else fail(text)


def res5_dilations(lines: Lines) -> tuple[int, ...] | None:
    """The 3x3 dilations of res5's three blocks."""
    text = text_of(lines, "dilations")
    if is_none(text):
        return None
    if "->" in text:  # Detectron2: RES5_DILATION x multi-grid
        return ints(group(text, "->"))
    stage = ints(group(text))[-1]  # MMSeg: per-stage dilations, contract_dilation halves the first block
    return (max(stage // 2, 1), stage, stage)


def coarse_head(lines: Lines) -> str:
    text = text_of(lines, "coarse_head")
    for phrase, name in (("FCNHead", "fcn"), ("ASPP", "aspp"), ("PSPHead", "psp"), ("SemSegFPNHead", "fpn")):
        if phrase in text:
            return name
    raise NotUnderstood(f"unknown coarse head {text!r}")


def aspp_dilations(lines: Lines) -> tuple[int, ...] | None:
    if lines.get("aspp_dilations") is None:
        return None
    text = text_of(lines, "aspp_dilations")
    values = ints(group(text))
    return (1,) + values if text.startswith("1x1 branch") else values


def head_dropout(lines: Lines) -> tuple[str, float] | None:
    """(kind, p) of the dropout before the coarse classifier: "channel" (Dropout2d) or "element"."""
    text = text_of(lines, "head_dropout")
    if is_none(text):
        return None
    kind = lines.get("dropout_kind")
    kind = text if kind is None else kind.value
    if "element-wise" in kind:
        return ("element", numbers(text)[0])
    if lines.get("dropout_kind") is not None:
        need(kind, "Dropout2d")
    return ("channel", numbers(text)[0])


def aux_head(lines: Lines) -> int | None:
    """The auxiliary head's width (None: no auxiliary head)."""
    if is_none(text_of(lines, "aux_head")):
        return None
    return first_int(text_of(lines, "aux_head_channels"))


def init_pna_head(lines: Lines) -> tuple[str, str, str]:
    """(query/value embeddings, MLP, stage classifiers)."""
    text = text_of(lines, "init_pna_head")
    if text.startswith("PyTorch defaults"):
        return (TORCH, TORCH, TORCH)
    need(text, "query/value embeds c2_xavier_fill", "MLP fc1/fc2 c2_msra_fill", "stage classifiers normal(0, 0.001)")
    return (XAVIER_C2, MSRA, NORMAL_0001)


def init_heads(lines: Lines) -> tuple[str | None, ...]:
    """(coarse-head convs, coarse classifier, auxiliary classifier, FPN-neck convs)."""
    text = text_of(lines, "init_heads")
    if text.startswith("coarse head ConvModules"):
        need(text, "kaiming_normal fan_out", "coarse conv_seg: PyTorch default", "aux conv_seg: normal std 0.01")
        return (MSRA, TORCH, NORMAL_001, None)
    if text.startswith("ASPP convs"):
        need(text, "c2_xavier_fill", "predictor normal(0, 0.001)")
        return (XAVIER_C2, NORMAL_0001, None, None)
    need(text, "SemSegFPNHead convs and predictor c2_msra_fill", "FPN lateral/output convs c2_xavier_fill")
    return (MSRA, MSRA, None, XAVIER_C2)


def size_divisibility(lines: Lines) -> int:
    text = text_of(lines, "size_divisibility")
    return 1 if is_none(text) or first_int(text) == 0 else first_int(text)


def norm_layer_head(lines: Lines) -> str:
    text = text_of(lines, "norm_layer_head")
    return "GN" if text.startswith("GroupNorm") else "BN" if "SyncBN" in text else fail(text)


def loss_weights(lines: Lines) -> tuple[tuple[str, float], ...]:
    text = text_of(lines, "loss_weights")
    coarse, pna = numbers(need(text, "coarse", "PNA"))[:2]
    aux = () if "no aux" in text else (("aux", float(re.search(r"aux (\d\.\d+)", text).group(1))),)
    return (("P0", coarse),) + tuple((f"P{m}", pna) for m in range(1, 5)) + aux


def loss(lines: Lines) -> tuple[tuple[str, str], ...]:
    """Per dense output, how its pixel losses are reduced."""
    averaging, kinds = text_of(lines, "loss_averaging"), text_of(lines, "loss_type_per_output")
    outputs = ("P0", "P1", "P2", "P3", "P4") + (("aux",) if lines.get("aux_head") and not is_none(
        text_of(lines, "aux_head")) else ())
    if "ALL B*H*W pixels" in averaging:
        return tuple((o, MEAN_ALL) for o in outputs)
    need(kinds, "coarse:", "each PNA stage:")
    coarse, stages = kinds.split("each PNA stage:", 1)
    mining = text_of(lines, "hard_pixel_mining")
    fraction = numbers(mining.split("int(", 1)[1])[0] if "int(" in mining else None
    chunk = first_int(text_of(lines, "batch_per_gpu"))

    def kind(part: str) -> str:
        mined = part.strip().split(" (")[0].strip(" ;").startswith("hard_pixel_mining")
        return top_k(fraction, chunk) if mined else MEAN_VALID
    return (("P0", kind(coarse.split("coarse:", 1)[1])),) + tuple((f"P{m}", kind(stages)) for m in range(1, 5))


def decay(lines: Lines) -> tuple[tuple[str, bool], ...]:
    """Whether each kind of parameter gets weight decay."""
    text = text_of(lines, "paramwise_rules")
    if "custom_keys decay_mult 0" in text:  # MMSeg: by name ('norm' = their LayerNorms; BN is named bn*)
        need(text, "'rpb'", "'norm'", "'relative_position_bias_table'", "BN (named bn*)", "biases")
        table = {"BatchNorm": True, "LayerNorm (PNA)": False, "LayerNorm (SAM)": False, "LayerNorm (Swin)": False,
                 "bias": True, "rpb": False, "temperature": True, "Swin position bias": False}
    else:  # Detectron2: by module type, the SAM's own LayerNorm class not recognised
        need(text, "BN/SyncBN/GN", "LayerNorm", "(SAM) not recognised -> decays", "rpb, biases, SAM temperature decay")
        table = {"BatchNorm": False, "GroupNorm": False, "LayerNorm (PNA)": False, "LayerNorm (SAM)": True,
                 "bias": True, "rpb": True, "temperature": True}
    return tuple(sorted(table.items()))


def warmup(lines: Lines) -> tuple[int, float | None]:
    text = text_of(lines, "warmup")
    if is_none(text):
        return (0, None)
    iters = int(re.search(r"(\d+) iters", text).group(1))
    return (iters, numbers(text.split("warmup_ratio", 1)[1])[0])


def train_resize(lines: Lines) -> tuple:
    text = text_of(lines, "train_resize")
    if text.startswith("Resize img_scale"):
        long, short = ints(group(text, "img_scale"))
        return ("ratio", (short, long), group(text, "ratio_range"))
    cap = int(re.search(r"<= (\d+)", text).group(1))
    if "int(x*0.1*512), x=5..20" in text:
        return ("short", tuple(int(x * 0.1 * 512) for x in range(5, 21)), cap)
    return ("short", ints(group(text, "choice of")), cap)


def crop(lines: Lines) -> tuple[int, int]:
    h, w = re.match(r"(\d+)x(\d+)", text_of(lines, "crop_size")).groups()
    return (int(h), int(w))


def cat_max_ratio(lines: Lines) -> tuple[float, int]:
    text = text_of(lines, "cat_max_ratio")
    ratio = numbers(text)[0]
    if "11th draw" in text:
        return (ratio, 11)
    return (ratio, int(re.search(r"up to (\d+) draws", text).group(1)))


def photometric(lines: Lines) -> tuple:
    text = text_of(lines, "photometric_distortion")
    brightness = int(re.search(r"brightness \+-(\d+)", text).group(1))
    factors = group(text.replace("x[", "("), "contrast")
    hue = re.search(r"= \[(-?\d+),(-?\d+)\]", text) or re.search(r"hue int \[(-?\d+),(-?\d+)\]", text)
    return (brightness, factors, factors, (int(hue.group(1)), int(hue.group(2))))


def pad(lines: Lines) -> tuple:
    text = text_of(lines, "pad")
    need(text, "bottom/right")
    if text.startswith("Pad to"):
        need(text, "AFTER Normalize", "image 0", "seg 255")
        h, w = re.search(r"Pad to (\d+)x(\d+)", text).groups()
        return ("after normalisation", 0.0, 255, "bottom/right", f"to the crop {h}x{w}")
    need(text, "after normalisation", "0", "255", "largest H, W of the")
    divisor = 1 if "no rounding" in text else int(re.search(r"rounded up to (\d+)", text).group(1))
    return ("after normalisation", 0.0, 255, "bottom/right", f"to the batch's largest H, W rounded up to {divisor}")


def eval_classes(lines: Lines, num_classes: int) -> tuple:
    """(classes the headline mIoU averages, classes of the authors' evaluator in our ids, what the headline
    does with DeepGlobe's unknown ground truth)."""
    text = text_of(lines, "eval_metric_classes")
    if "label ids 0..5 scored" in text:  # DeepGlobe: the paper's (MagNet's) metric and their evaluator
        need(text_of(lines, "paper_metric"), "unknown ground truth kept", "averaged over ids 1..6, the land classes")
        return (tuple(range(6)), ints(group(text, "our ids")), "unknown kept")
    if "SemSegEvaluator over 3 classes" in text:
        return ((0, 1, 2), (0, 1, 2), None)
    if f"{num_classes} classes" not in text:
        raise NotUnderstood(f"expected {num_classes} classes in {text!r}")
    return (tuple(range(num_classes)), None, None)


def swin_shifted_windows(lines: Lines) -> str | None:
    """The order of a shifted Swin block: "pad, then roll" (MMSeg) or None (no Swin backbone)."""
    if lines.get("swin_shifted_windows") is None:
        return None
    text = text_of(lines, "swin_shifted_windows")
    return "pad, then roll" if text.startswith("pad, then roll") else fail(text)


def _first_float(setting: str) -> Callable[[Lines], float]:
    return lambda lines: numbers(text_of(lines, setting))[0]


def _int_of(setting: str) -> Callable[[Lines], int]:
    return lambda lines: first_int(text_of(lines, setting))


# check name -> reader (the eval_metric_classes reader also takes the dataset's class count)
EXPECT: dict[str, Callable[..., Any]] = {
    "backbone": backbone, "stem_widths": stem, "output_stride": _int_of("output_stride"), "dilations": res5_dilations,
    "coarse_head": coarse_head, "head_channels": _int_of("head_channels"), "aspp_dilations": aspp_dilations,
    "head_dropout": head_dropout, "aux_head": aux_head, "pna_window": _int_of("pna_window"),
    "pna_resize_mode": lambda lines: text_of(lines, "pna_resize_mode").split()[0],
    "pna_embed_dims": lambda lines: ints(group(text_of(lines, "pna_embed_dims"))),
    "pna_embed_bias": lambda lines: text_of(lines, "pna_embed_bias").startswith("True"),
    "pna_uses_sam": lambda lines: text_of(lines, "pna_uses_sam").split(":")[0] in ("always", "yes"),
    "pna_heads": lambda lines: ints(tuple(numbers(text_of(lines, "pna_heads").split("=", 1)[1])[:4])),
    "pna_mlp_ratio": _first_float("pna_mlp_ratio"), "init_pna_head": init_pna_head, "init_heads": init_heads,
    "coarse_head_runs_in_training": _int_of("coarse_head_runs_in_training"), "size_divisibility": size_divisibility,
    "norm_layer_head": norm_layer_head, "psp_pool_scales": lambda lines: None if lines.get("psp_pool_scales") is None else ints(
        group(text_of(lines, "psp_pool_scales"))),
    "drop_path": lambda lines: None if lines.get("drop_path") is None else _first_float("drop_path")(lines),
    "swin_shifted_windows": swin_shifted_windows,
    "num_classes": _int_of("num_classes"), "loss_weights": loss_weights, "loss": loss,
    "optimizer": lambda lines: text_of(lines, "optimizer").split()[0], "lr": _first_float("lr"),
    "weight_decay": _first_float("weight_decay"), "betas": lambda lines: group(text_of(lines, "betas")),
    "paramwise_rules": decay, "lr_schedule": lambda lines: numbers(text_of(lines, "lr_schedule").replace(
        "^", " power ").split("power", 1)[1])[0],
    "warmup": warmup, "max_iters": _int_of("max_iters"),
    "batch": lambda lines: first_int(text_of(lines, "batch_per_gpu")) * first_int(text_of(lines, "num_gpus")),
    "grad_clip": lambda lines: None if is_none(text_of(lines, "grad_clip")) else numbers(
        text_of(lines, "grad_clip").split("clipping to", 1)[1])[0],
    "precision": lambda lines: "fp16 autocast + loss scaling" if re.search(r"fp16|AMP", text_of(lines, "precision"))
    else fail(text_of(lines, "precision")),
    "train_resize": train_resize, "crop_size": crop, "cat_max_ratio": cat_max_ratio,
    "flip_prob": _first_float("flip_prob"), "photometric_distortion": photometric,
    "normalize_mean_std": lambda lines: (group(text_of(lines, "normalize_mean_std"), "mean"),
                                         group(text_of(lines, "normalize_mean_std"), "std")),
    "pad": pad, "interpolation": lambda lines: (
        "bilinear, no antialias" if "bilinear (INTER_LINEAR, no antialias)" in text_of(lines, "interpolation") else
        "bilinear, antialiased" if "bilinear (antialiased when shrinking)" in text_of(lines, "interpolation")
        else fail(text_of(lines, "interpolation"))),
    "test_resize": lambda lines: (first_int(text_of(lines, "test_resize").split("short side", 1)[1]),
                                  int(re.search(r"<= (\d+)", text_of(lines, "test_resize")).group(1))),
    "test_mode": lambda lines: need(text_of(lines, "test_mode"), "whole image") and "whole",
    "ignore_index": _int_of("ignore_index"), "eval_metric_classes": eval_classes,
    "eval_interval": _int_of("eval_interval"), "checkpoint_interval": _int_of("checkpoint_interval"),
}
