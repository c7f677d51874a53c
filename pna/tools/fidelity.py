"""Fidelity: each paper row's built pipeline, measured, against the audit of the authors' code.

The authors' side is ``docs/authors_audit.csv`` (their value and its source, per config group and
setting; :mod:`pna.tools.audit`), read into comparable values by :mod:`pna.tools.fidelity_expect`.
Our side is measured on what the paper profile builds (:mod:`pna.tools.fidelity_model`: the model,
its initial weights and its optimiser; :mod:`pna.tools.fidelity_pipeline`: the loss of a crafted
batch, the schedule, transformed samples and their padding), not read from our own constants.
Every difference must be listed in :data:`DEVIATIONS` with its reason; ``pna fidelity`` writes the
comparison to ``results/fidelity.md`` (:mod:`pna.tools.fidelity_report`) and ``--check`` fails on
an unexplained difference.

Example::

    >>> [c.name for c in CHECKS][:3]
    ['backbone', 'stem_widths', 'output_stride']
    >>> [(d.check, d.explained) for d in differences("voc/fcn_r50_os32_pna")]   # doctest: +SKIP
    []
"""
from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass
from typing import Any

from pna.configs import ROWS, load_config
from pna.tools.audit import AuditLine, group_of, lookup_group
from pna.tools.fidelity_expect import EXPECT, NotUnderstood

MODEL, TRAINING = "model", "training"


@dataclass(frozen=True)
class Check:
    name: str                    # our measurement's key (and the audit setting, unless ``settings`` says)
    settings: tuple[str, ...]    # the audit settings its reader takes; the first one is cited
    scope: str                   # MODEL: compared on rows with the authors' architecture; TRAINING: on every row


def _c(name: str, scope: str, *settings: str) -> Check:
    return Check(name, settings or (name,), scope)


CHECKS: tuple[Check, ...] = (
    _c("backbone", MODEL), _c("stem_widths", MODEL), _c("output_stride", MODEL), _c("dilations", MODEL),
    _c("coarse_head", MODEL), _c("head_channels", MODEL), _c("aspp_dilations", MODEL),
    _c("psp_pool_scales", MODEL), _c("norm_layer_head", MODEL), _c("head_dropout", MODEL, "head_dropout", "dropout_kind"),
    _c("aux_head", MODEL, "aux_head", "aux_head_channels"), _c("drop_path", MODEL), _c("swin_shifted_windows", MODEL),
    _c("pna_window", MODEL),
    _c("pna_resize_mode", MODEL), _c("pna_embed_dims", MODEL), _c("pna_embed_bias", MODEL),
    _c("pna_uses_sam", MODEL), _c("pna_heads", MODEL), _c("pna_mlp_ratio", MODEL), _c("init_pna_head", MODEL),
    _c("init_heads", MODEL), _c("coarse_head_runs_in_training", MODEL), _c("size_divisibility", MODEL),
    _c("num_classes", TRAINING), _c("loss_weights", TRAINING, "loss_weights", "aux_head_weight"),
    _c("loss", TRAINING, "loss_averaging", "loss_type_per_output", "hard_pixel_mining", "hard_pixel_mining_scope",
       "batch_per_gpu", "aux_head"),
    _c("optimizer", TRAINING), _c("lr", TRAINING), _c("weight_decay", TRAINING), _c("betas", TRAINING),
    _c("paramwise_rules", TRAINING), _c("lr_schedule", TRAINING), _c("warmup", TRAINING), _c("max_iters", TRAINING),
    _c("batch", TRAINING, "batch_per_gpu", "num_gpus"), _c("grad_clip", TRAINING), _c("precision", TRAINING),
    _c("train_resize", TRAINING), _c("crop_size", TRAINING), _c("cat_max_ratio", TRAINING), _c("flip_prob", TRAINING),
    _c("photometric_distortion", TRAINING), _c("normalize_mean_std", TRAINING), _c("pad", TRAINING),
    _c("interpolation", TRAINING), _c("test_resize", TRAINING), _c("test_mode", TRAINING),
    _c("ignore_index", TRAINING), _c("eval_metric_classes", TRAINING, "eval_metric_classes", "paper_metric"),
    _c("eval_interval", TRAINING),
    _c("checkpoint_interval", TRAINING),
)
# Checks whose values are (key, value) pairs compared on the keys both sides have (a baseline
# without refinement has no P1..P4; a ResNet has no Swin position tables).
_KEYED = ("loss_weights", "loss", "paramwise_rules")
# Checks whose measured strings may name several formulas at once ("a | b": they coincide there).
_ALTERNATIVES = ("init_pna_head", "init_heads", "loss")

_NAM_ROWS = ("voc/fcn_r50_os32_pna_nam*", "voc/psp_swin_t_pna_nam")
_NO_TRAINING_EFFECT = ("when the run saves its resume state; the authors' interval changes nothing in training "
                       "(ours: a tenth of the run, the evaluation interval)")
# (config-name pattern, check) -> why the paper profile differs from the authors' code on purpose.
DEVIATIONS: dict[tuple[str, str], str] = {
    **{(f"voc/fcn_r50_os32_pna_nam_w{w}", "pna_window"): (
        f"Table 2's window ablation: the paper's L = {w} on the NAM-only FCN row (the authors' configs all "
        f"use 9)") for w in (5, 7, 11)},
    **{(pattern, "pna_uses_sam"): ("the paper's NAM-only ablation (Tables 1-3): the SAM is replaced by the "
                                   "embedded feature, as the authors' Detectron2 switch USE_SA does; their MMSeg "
                                   "branch has no such switch") for pattern in _NAM_ROWS},
    **{(f"voc/fcn_swin_{t}_pna", check): ("FCN + PNA on Swin is a row of the paper's Table 3 with no config of the "
                                          "authors: it trains with the Swin PSP + PNA setting and the FCN head the "
                                          "paper names") for t in "tb" for check in ("coarse_head", "psp_pool_scales")},
    ("voc/*swin*", "size_divisibility"): (
        "audit (b)14: our Swin pads the test image to a multiple of 32 and crops the logits back, theirs pads "
        "inside the network per stage; test-time only, and the 512 training crops are multiples of 32 already"),
    ("trans10k/*", "eval_metric_classes"): (
        "audit (b)13: the headline mIoU averages things and stuff, as the paper's Table 6 reports; the authors' "
        "evaluator averages all 3 classes, which every run also records (mIoU_authors)"),
    ("cityscapes/*", "checkpoint_interval"): _NO_TRAINING_EFFECT,
    ("deepglobe/*", "checkpoint_interval"): _NO_TRAINING_EFFECT,
    ("trans10k/*", "checkpoint_interval"): _NO_TRAINING_EFFECT,
    ("trans10k/deeplabv3plus_r50_os8", "pad"): (
        "a quoted baseline on MMSeg's ResNetV1c: Detectron2 pads batches to its backbone's divisibility, 32 only "
        "for its FPN backbone; this model needs none, so its batches are padded to their largest size only"),
}


@dataclass(frozen=True)
class Result:
    """One check of one row: our measured value, the authors' value read from the audit, its line."""

    check: Check
    ours: Any
    authors: Any
    line: AuditLine | None
    compared: bool                # False: a quoted baseline's own architecture (shown, not compared)
    same: bool
    reason: str | None = None     # why a compared difference is on purpose

    @property
    def explained(self) -> bool:
        return self.same or not self.compared or self.reason is not None


def _same(ours: Any, theirs: Any, check: str) -> bool:
    if check in _KEYED and isinstance(ours, tuple) and isinstance(theirs, tuple):
        a, b = dict(ours), dict(theirs)
        common = set(a) & set(b)
        return bool(common) and all(_same(a[k], b[k], "") for k in common)
    if check in _ALTERNATIVES and isinstance(ours, tuple) and isinstance(theirs, tuple):
        return len(ours) == len(theirs) and all(
            (o is None and t is None) or (o is not None and t is not None and t in o.split(" | "))
            for o, t in zip(ours, theirs))
    if isinstance(ours, str) and isinstance(theirs, str) and check in _ALTERNATIVES:
        return theirs in ours.split(" | ")
    if isinstance(ours, bool) or isinstance(theirs, bool):
        return ours is theirs or ours == theirs and type(ours) is type(theirs)
    if isinstance(ours, (int, float)) and isinstance(theirs, (int, float)):
        return math.isclose(ours, theirs, rel_tol=1e-9)
    if isinstance(ours, (tuple, list)) and isinstance(theirs, (tuple, list)):
        return len(ours) == len(theirs) and all(_same(o, t, check) for o, t in zip(ours, theirs))
    return ours == theirs


def measure(config_name: str) -> dict[str, Any]:
    """Every measured value of the paper profile of ``config_name``."""
    from pna.data import info
    from pna.tools.fidelity_model import model_facts
    from pna.tools.fidelity_pipeline import config_facts, data_facts, loss_facts, schedule_facts

    cfg = load_config(config_name, "paper")
    o, t = cfg.optim, cfg.train
    model = model_facts(cfg.model.name, json.dumps(cfg.model.overrides, sort_keys=True),
                        info(cfg.data.dataset).num_classes, (o.lr, o.weight_decay, tuple(o.betas), o.decay_rule))
    return {**model, **loss_facts(json.dumps(cfg.model.loss, sort_keys=True), model["dense_outputs"]),
            **schedule_facts(t.iters, o.warmup_iters, o.warmup_ratio, o.poly_power, o.min_lr),
            **data_facts(cfg, model["size_divisibility"]), **config_facts(cfg)}


def expected(config_name: str, check: Check, num_classes: int) -> tuple[Any, AuditLine | None]:
    """The authors' value of ``check`` for the row, read from its audit group, and the cited line."""
    group = group_of(config_name)
    lines: dict[str, AuditLine | None] = {}
    for setting in check.settings:
        try:
            lines[setting] = lookup_group(group, setting)
        except KeyError:
            lines[setting] = None
    reader = EXPECT[check.name]
    value = reader(lines, num_classes) if check.name == "eval_metric_classes" else reader(lines)
    return value, lines[check.settings[0]]


def _reason(config_name: str, check: str) -> str | None:
    return next((why for (pattern, name), why in DEVIATIONS.items()
                 if name == check and fnmatch.fnmatchcase(config_name, pattern)), None)


def results(config_name: str) -> list[Result]:
    """Every check of one row, measured and compared."""
    row, ours = ROWS[config_name], measure(config_name)
    out = []
    for check in CHECKS:
        compared = check.scope == TRAINING or row.basis != "inferred"
        try:
            theirs, line = expected(config_name, check, ours["num_classes"])
        except NotUnderstood as err:
            out.append(Result(check, ours.get(check.name), f"not understood: {err}", None, compared, False))
            continue
        same = _same(ours.get(check.name), theirs, check.name)
        out.append(Result(check, ours.get(check.name), theirs, line, compared, same,
                          None if same or not compared else _reason(config_name, check.name)))
    return out


def differences(config_name: str) -> list[Result]:
    """The compared checks where our measured value differs from the authors'."""
    return [r for r in results(config_name) if r.compared and not r.same]

