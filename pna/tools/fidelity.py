"""Fidelity: each paper row's resolved settings beside the authors' (SPEC "Per-row settings").

"Resolved" means read from what the paper profile actually builds: the config, the registry spec,
the loss and the transforms it constructs, and the backbone and head modules themselves (stem
widths, output stride and res5 dilations are measured on the built backbone). Every difference
from the authors' value must be listed in :data:`DEVIATIONS` with its reason;
``scripts/fidelity_report.py`` writes the comparison to ``results/fidelity.md`` and the tests
fail on any unexplained difference.

Example::

    >>> diffs = differences("voc/fcn_r50_os32_pna")   # doctest: +SKIP
    >>> [(d.field, d.explained) for d in diffs]      # doctest: +SKIP
    []
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from pna.configs import ROWS, load_config
from pna.configs.authors import AUTHORS, AuthorsSetting

# Fields compared only on rows the authors shipped (a quoted baseline has its own architecture).
MODEL_FIELDS = ("backbone", "stem", "output_stride", "res5_dilations", "head", "head_channels",
                "aspp_dilations", "window", "resize_mode", "embed_bias", "aux")
# Compared on every row (a baseline trains with its PNA row's setting).
TRAINING_FIELDS = ("hard_mining", "lr", "weight_decay", "decay_rule",
                   "poly_power", "warmup_iters", "clip_grad", "iters", "batch", "crop", "train_resize",
                   "scale_base", "scale_range", "short_sides", "max_size", "cat_max_ratio", "photometric",
                   "test_short", "test_max", "drop_path")

# Our backbone names for SPEC's.
BACKBONES = {"ResNetV1c-50": ("resnet50c",), "ResNetV1c-101": ("resnet101c",), "R-52": ("resnet52",),
             "R-52 / R-103": ("resnet52", "resnet103"), "Swin-T": ("swin_t",), "Swin-B": ("swin_b",)}

# (config name or "*", field) -> why we differ from the authors on purpose.
DEVIATIONS: dict[tuple[str, str], str] = {
    **{(f"voc/fcn_r50_os32_pna_nam_w{w}", "window"): f"Table 2's window ablation: this row trains the shipped "
       f"FCN + PNA (NAM) setting with L = {w} (the authors' shipped config has L = 9)" for w in (5, 7, 11)},
}

# Facts that are not a config field, listed in the report.
NOTES = (
    "DeepGlobe split: the authors did not ship their 454 / 207 / 142 tile lists (and their validation "
    "and test lists are the same file); `python -m data_prep.deepglobe` makes a fixed sha256-ordered split "
    "of the challenge's land-train tiles, which need not be theirs.",
    "Batch: the authors' total batch is 16 (4 GPUs x 4, or 2 GPUs x 8 for VOC DeepLabV3); `train.batch_size` "
    "is the total over however many processes run, so the optimisation is the same on any GPU count.",
    "Mixed precision: both code bases train in fp16 with dynamic loss scaling; `train.amp` does the same on "
    "CUDA (GradScaler); CPU runs stay in fp32.",
    "Cityscapes DeepLabV3 rows: Detectron2's DeepLabV3 head pools its image-pooling branch over the training "
    "crop's stride-16 size (32x64) with stride 1 and resizes back, so the 1024x2048 test image gets local, not "
    "global, pooling; `pool_kernel=(32, 64)` does the same (a Detectron2 fact, not listed in SPEC).",
    "PointRend and the other quoted baselines have no config of the authors: they train with the setting of "
    "the PNA row they are compared with (same backbone, stride, schedule and augmentation).",
)


@dataclass(frozen=True)
class Difference:
    field: str
    ours: Any
    authors: Any
    reason: str | None

    @property
    def explained(self) -> bool:
        return self.reason is not None


def _quiet_build(builder, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return builder(*args, **kwargs)


@functools.lru_cache(maxsize=None)
def backbone_facts(name: str, output_stride: int) -> dict:
    """Stem widths, measured output stride and res5 block dilations of a built backbone."""
    from pna.models import build_backbone

    net = _quiet_build(build_backbone, name, output_stride).eval()
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    stem = tuple(c.out_channels for c in convs[:3]) if convs[0].kernel_size == (3, 3) else None
    with torch.no_grad():
        res5 = net(torch.zeros(1, 3, 64, 64))[-1]
    res5_convs = [m for n, m in net.named_modules() if isinstance(m, nn.Conv2d) and "layer4" in n
                  and m.kernel_size == (3, 3) and m.groups == 1]
    dilations = tuple(c.dilation[0] for c in res5_convs) or None
    drop_probs = [m.drop_prob for m in net.modules() if hasattr(m, "drop_prob")]  # timm DropPath
    return {"stem": stem, "output_stride": 64 // res5.shape[-1], "res5_dilations": dilations,
            "drop_path": round(max(drop_probs), 6) if drop_probs else None, "channels": list(net.out_channels)}


@functools.lru_cache(maxsize=None)
def head_facts(name: str, in_channels: tuple[int, ...], channels: int | None, kwargs: tuple) -> dict:
    """Width and ASPP dilations of a built coarse head."""
    from pna.models.heads import build_head

    head = _quiet_build(build_head, name, list(in_channels), 2, channels=channels, **dict(kwargs))
    aspp = getattr(head, "aspp", None)
    dilations = None
    if aspp is not None and name == "aspp":
        dilations = tuple(1 if b[0].kernel_size == (1, 1) else b[0].dilation[0] for b in aspp.branches[1:])
    return {"channels": head.classifier[-1].in_channels, "dilations": dilations}


def expected_res5_dilations(s: AuthorsSetting, output_stride: int) -> tuple[int, ...] | None:
    """The 3x3 dilations of res5's three blocks in the authors' code base at ``output_stride``:
    MMSeg's contract_dilation (the first block at half the stage's dilation), Detectron2's DeepLab
    multi-grid (the stage's dilation times 1, 2, 4). None for Swin."""
    if s.stem is None:
        return None
    base = {32: 1, 16: 2, 8: 4}[output_stride]
    if s.res5_multigrid:
        return tuple(base * m for m in s.res5_multigrid)
    return (max(base // 2, 1), base, base)


def resolved(config_name: str) -> dict:
    """The paper profile's settings of one row, read from what it builds."""
    from pna.engine.build import build_train_transform_of
    from pna.data.photometric import PhotometricDistortion
    from pna.data.transforms import CategoryAreaCrop, RandomRescale, RandomShortSideResize
    from pna.models import SegmentationLoss, get_spec

    cfg = load_config(config_name, "paper")
    spec = get_spec(cfg.model.name, **cfg.model.overrides)
    facts = backbone_facts(spec.backbone, spec.output_stride)
    steps = {type(t): t for t in build_train_transform_of(cfg).transforms}
    loss = SegmentationLoss(**cfg.model.loss)
    mined = tuple(h for h, outs in (("coarse", ("P0",)), ("pna", ("P1", "P2", "P3", "P4")))
                  if any(loss.mines(o) for o in outs))
    head = head_facts(spec.head, tuple(facts["channels"]), spec.head_channels, tuple(sorted(spec.head_kwargs.items())))
    rescale, short = steps.get(RandomRescale), steps.get(RandomShortSideResize)
    return {
        "backbone": spec.backbone, "stem": facts["stem"], "output_stride": facts["output_stride"],
        "res5_dilations": facts["res5_dilations"], "head": spec.head,
        "head_channels": head["channels"], "aspp_dilations": head["dilations"],
        "window": spec.window_size, "resize_mode": spec.resize_mode, "embed_bias": spec.embed_bias,
        "aux": spec.aux, "hard_mining": mined, "lr": cfg.optim.lr, "weight_decay": cfg.optim.weight_decay,
        "decay_rule": cfg.optim.decay_rule, "poly_power": cfg.optim.poly_power,
        "warmup_iters": cfg.optim.warmup_iters, "clip_grad": cfg.optim.clip_grad, "iters": cfg.train.iters,
        "batch": cfg.train.batch_size, "crop": steps[CategoryAreaCrop].crop,
        "train_resize": "short" if short else "ratio",
        "scale_base": None if short else (tuple(sorted(rescale.base_size)) if rescale.base_size else None),
        "scale_range": None if short else rescale.scale_range,
        "short_sides": short.short_sides if short else None, "max_size": short.max_size if short else None,
        "cat_max_ratio": steps[CategoryAreaCrop].cat_max_ratio,
        "photometric": "no channel swap" if PhotometricDistortion in steps else "none",
        "test_short": cfg.data.eval_short_side, "test_max": cfg.data.eval_max_size,
        "drop_path": facts["drop_path"] if "swin" in spec.backbone else None,
    }


def authors(config_name: str, output_stride: int | None = None) -> dict:
    """The authors' values of the same fields (SPEC terms mapped to ours). A quoted baseline's
    res5 dilations follow its own ``output_stride`` under the authors' convention."""
    row = ROWS[config_name]
    s: AuthorsSetting = AUTHORS[row.setting]
    stride = s.output_stride if row.basis != "inferred" or output_stride is None else output_stride
    return {**{f: getattr(s, f) for f in MODEL_FIELDS + TRAINING_FIELDS if hasattr(s, f)},
            "batch": s.batch_per_gpu * s.gpus, "photometric": "no channel swap",
            "scale_base": tuple(sorted(s.scale_base)) if s.scale_base else None,
            "res5_dilations": expected_res5_dilations(s, stride)}


def _same(ours: Any, theirs: Any, field: str) -> bool:
    if field == "backbone":
        return any(ours == b for b in BACKBONES.get(theirs, ()))
    if isinstance(ours, float) or isinstance(theirs, float):
        return ours is not None and theirs is not None and abs(ours - theirs) <= 1e-12 * max(1, abs(theirs))
    if isinstance(ours, (tuple, list)) and isinstance(theirs, (tuple, list)):
        return tuple(ours) == tuple(theirs)
    return ours == theirs


def compared_fields(config_name: str) -> tuple[str, ...]:
    return (MODEL_FIELDS if ROWS[config_name].basis != "inferred" else ()) + TRAINING_FIELDS


def differences(config_name: str) -> list[Difference]:
    """Every compared field where our resolved value differs from the authors', with its reason."""
    ours = resolved(config_name)
    theirs = authors(config_name, ours["output_stride"])
    out = []
    for field in compared_fields(config_name):
        if not _same(ours[field], theirs[field], field):
            reason = DEVIATIONS.get((config_name, field), DEVIATIONS.get(("*", field)))
            out.append(Difference(field, ours[field], theirs[field], reason))
    return out


def paper_rows() -> list[str]:
    return list(ROWS)


def _fmt(value: Any) -> str:
    if isinstance(value, tuple):
        if len(value) > 6:
            return f"{value[0]}..{value[-1]} ({len(value)})"
        return "(" + ", ".join(str(v) for v in value) + ")"
    if isinstance(value, float):
        return f"{value:g}"
    return "-" if value is None else str(value)


def report_markdown() -> str:
    """``results/fidelity.md``: per authors' setting, every row's resolved values beside theirs."""
    lines = ["# Fidelity: the paper profile beside the authors' per-row settings", "",
             "Generated by `pna fidelity` from what the paper configs build (config, "
             "registry spec, loss, transforms, and the built backbone and head: stem widths, output stride and "
             "res5 dilations are measured). Source of the authors' values: docs/authors_audit.csv, "
             "transcribed in `pna/configs/authors.py`.", "",
             "Legend: `=` same as the authors; a value in **bold** differs (reason below); a value in *italics* "
             "is a quoted baseline's own architecture (the authors shipped no config for it; it trains with the "
             "setting of the PNA row it is compared with). A baseline's res5 dilations are compared with the "
             "authors' convention (MMSeg contract dilation, Detectron2 multi-grid) at that row's own stride.", ""]
    unexplained, explained = [], []
    for key in AUTHORS:
        rows = [n for n, r in ROWS.items() if r.setting == key]
        lines += [f"## {key} ({AUTHORS[key].branch})", "", "| field | authors | " + " | ".join(
            f"`{n.split('/')[1]}`" for n in rows) + " |", "|---" * (len(rows) + 2) + "|"]
        per_row = {}
        for n in rows:
            ours = resolved(n)
            per_row[n] = (ours, authors(n, ours["output_stride"]), {d.field: d for d in differences(n)})
        for field in MODEL_FIELDS + TRAINING_FIELDS:
            cells = []
            for n in rows:
                ours, theirs, diffs = per_row[n]
                if field in diffs:
                    cells.append(f"**{_fmt(ours[field])}**")
                elif field not in compared_fields(n):
                    cells.append("=" if _same(ours[field], theirs[field], field) else f"*{_fmt(ours[field])}*")
                else:
                    cells.append("=")
            lines.append(f"| {field} | {_fmt(per_row[rows[0]][1][field])} | " + " | ".join(cells) + " |")
        notes = [f"- `{n}`: {ROWS[n].note}" for n in rows if ROWS[n].note]
        lines += [""] + notes + ([""] if notes else [])
        for n in rows:
            for d in per_row[n][2].values():
                (explained if d.explained else unexplained).append((n, d))
    lines += ["## Differences and their reasons", ""]
    lines += [f"- `{n}` {d.field}: ours {_fmt(d.ours)}, authors {_fmt(d.authors)}. {d.reason}" for n, d in explained]
    lines += ["", f"Unexplained differences: {len(unexplained)}"]
    lines += [f"- `{n}` {d.field}: ours {_fmt(d.ours)}, authors {_fmt(d.authors)}" for n, d in unexplained]
    lines += ["", "## Facts that are no config field", ""] + [f"- {note}" for note in NOTES] + [""]
    return "\n".join(lines)
