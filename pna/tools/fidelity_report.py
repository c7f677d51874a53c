"""``results/fidelity.md``: the measured paper profile beside the audit, row by row, with the reason
for every difference (:mod:`pna.tools.fidelity`), the audit settings not measured and why, and the
measured figures (the crafted batch's losses, initial weight std).

Each authors' setting gets a self-contained section (:func:`setting_section`), so a test can
rebuild one section and find it verbatim in the committed file.
"""
from __future__ import annotations

from typing import Any

from pna.configs import ROWS
from pna.configs.authors import AUTHORS
from pna.tools.audit import audit_lines
from pna.tools.fidelity import CHECKS, DEVIATIONS, Result, results

# Audit settings the report does not measure, and why (every other setting has a check).
NOT_MEASURED: dict[str, str] = {
    "config_file": "which file: docs/authors_settings.md names it per setting",
    "base_chain": "the config's inheritance; the lines it resolves to are checked",
    "pretrained_weights": "ImageNet weights files: their loaders are tested (tests/test_weights.py); the report "
                          "builds random-init backbones, whose weights it does not measure",
    "strides": "measured as output_stride and the res5 dilations of the built backbone",
    "res5_multigrid": "measured as the res5 dilations (dilations)",
    "norm_layer_backbone": "BatchNorm, synchronised across processes under DDP (train.syncbn); one process "
                           "holding the 16 images normalises over them as SyncBN over 4 GPUs does",
    "sync_bn": "as norm_layer_backbone",
    "bn_eval_or_frozen_stages": "nothing is frozen in ours either: every parameter trains, BatchNorm in training mode",
    "aux_head_dropout": "the auxiliary head's classifier is the coarse head's kind (Dropout2d 0.1)",
    "pna_in_features": "the refinement reads res2..res5 by construction (ProgressiveRefinement)",
    "to_rgb": "images are read as RGB; the photometric steps act on the same colours in either channel order",
    "augmentation_order": "the pad's place is measured (pad); flip and the per-pixel photometric distortion "
                          "commute, so Detectron2's distortion-then-flip equals our flip-then-distortion",
    "test_flip": "no flip or multi-scale test in ours either",
    "eval_split": "the paper profile's splits are pna/configs/rows.py PAPER_DATA (DeepGlobe: see the notes)",
    "seed_determinism": "audit (b)15: ours seeds each process with seed + rank; theirs repeat the seed on every "
                        "rank (mm) or draw one per run (d2): no setting of the training changes",
    "data_loader": "audit (b)16: random batches without aspect-ratio grouping; the datasets' images share an "
                   "orientation (Cityscapes, DeepGlobe) or nearly (Trans10k), so the grouping changes little",
    "norm_layer_pna": "the PNA stage's structure is tested against the paper in tests/test_nam_sam.py",
    "pna_blocks_per_stage": "one block per stage by construction (RefineStage)",
    "pna_nam_block": "tested in tests/test_nam_sam.py and tests/test_na2d.py",
    "pna_rpb_init": "trunc_normal(0.02) in ours too (NeighbourhoodAggregation)",
    "pna_sam_block": "tested in tests/test_nam_sam.py",
    "nam_only_switch": "the NAM-only rows are basis 'paper' in pna/configs/rows.py (no mm config has the switch)",
    "pna_small_map_behaviour": "their NATTEN crashes on maps smaller than the window, ours does not "
                               "(tests/test_na2d.py); no shipped size reaches it",
    "pna_test_output": "the last stage, upsampled to the input, is the prediction (Segmentor in eval mode)",
    "pna_out_index": "every stage gets a loss in ours too (the loss check lists P1..P4)",
    "lr_multipliers": "no lr multiplier in ours, none in theirs (backbone x1.0)",
    "fpn_neck": "its structure is tested in tests/test_heads.py, its initialisation measured (init_heads)",
    "pna_loss_resize": "SegmentationLoss upsamples every output bilinearly to the label size (tests/test_models.py)",
    "paper_row": "the row table's note on cityscapes/fpn_r52_pna",
    "split_lists": "matched: `python -m data_prep.deepglobe` writes MagNet's 454 / 207 / 142 lists (their ids shipped in "
                   "data_prep/deepglobe_magnet_split.txt; tests/test_data_deepglobe.py)",
    "label_encoding": "their label files are not shipped: the authors' evaluator is scored in MagNet's encoding "
                      "(eval_metric_classes) and in the other one beside it (mIoU_authors_unknown_last); their "
                      "DeepGlobe checkpoint is loaded with MagNet's ids unless told otherwise (pna.authors.classes)",
    "test_precision": "MMSeg rows: their test ran under fp16 autocast, ours evaluates in fp32 (pna.engine.evaluate runs "
                      "no autocast); only the rounding of the logits differs, no setting; Detectron2 rows: fp32 in both",
    "nam_precision": "under AMP their NATTEN kernels take fp16 inputs; our neighbourhood attention computes in fp32 "
                     "inside autocast (pna/ops/common.py compute_dtype): rounding only, no setting",
}
# Facts that are no single check, listed in the report.
NOTES = (
    "DeepGlobe: the split is MagNet's (454 / 207 / 142, the paper's sizes, in the format the authors' loader "
    "reads; their own lists are not shipped, and their validation and test lists are the same file). The headline "
    "mIoU is MagNet's, which the paper follows: the 6 land classes, unknown ground truth kept in the confusion "
    "matrix. The authors' evaluator scores label ids 0..5; their colour table has MagNet's ids (unknown 0 ... "
    "barren 6), so mIoU_authors drops barren (our ids 6, 0..4); mIoU_authors_unknown_last, the other reading "
    "(unknown last: the 6 land classes), is recorded beside it.",
    "Per-GPU batches: the top-20 % hard pixels are taken per 4 images however many images one process holds "
    "(hard_pixel_chunk). Two per-GPU details stay per process: Detectron2's mean over labelled pixels of a "
    "non-mined output, and its batch padding, use the whole local batch (equal to theirs on 4 processes; on "
    "fewer they differ only where images of one batch have different sizes or labelled fractions).",
    "Mixed precision: both code bases train in fp16 with dynamic loss scaling; `train.amp` does the same on "
    "CUDA (GradScaler); CPU runs stay in fp32. MMSeg computes the coarse and auxiliary losses in fp32, ours under "
    "autocast (audit (b)17, negligible).",
    "PointRend and the other quoted baselines have no config of the authors: they train with the setting of the "
    "PNA row they are compared with; their own architecture is shown in italics, not compared. Our PointRend "
    "point loss averages over labelled points and runs the coarse head once; the audit did not read the authors' "
    "frameworks' PointRend, which no config of theirs uses.",
)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple) and value and all(isinstance(v, tuple) and len(v) == 2 and isinstance(v[0], str)
                                                   for v in value):
        groups: dict[str, list[str]] = {}
        for key, v in value:
            groups.setdefault(_fmt(v), []).append(key)
        return "; ".join(f"{', '.join(keys)}: {v}" for v, keys in groups.items())
    if isinstance(value, tuple):
        if len(value) > 8 and all(isinstance(v, int) for v in value):
            return f"({value[0]}..{value[-1]}, {len(value)} values)"
        return "(" + ", ".join(_fmt(v) for v in value) + ")"
    return str(value).replace("|", "/")


def _cell(r: Result) -> str:
    if r.same:
        return "="
    if not r.compared:
        return f"*{_fmt(r.ours)}*"
    return f"**{_fmt(r.ours)}**" + ("" if r.reason else " (unexplained)")


def setting_section(key: str, per_row: dict[str, list[Result]] | None = None) -> list[str]:
    """The report's section of one authors' setting: every check, the audit's value and source, and
    each row's measured value ("=" when it equals the authors')."""
    rows = [n for n, r in ROWS.items() if r.setting == key]
    per_row = per_row or {n: results(n) for n in rows}
    s = AUTHORS[key]
    lines = [f"## {key} ({'MMSegmentation' if s.branch == 'mm' else 'Detectron2'}; audit "
             + ", ".join(f"`{g}`" for g in s.audit_groups) + ")", "",
             "| check | authors (audit) | source | " + " | ".join(f"`{n.split('/')[1]}`" for n in rows) + " |",
             "|---" * (len(rows) + 3) + "|"]
    first = per_row[rows[0]]
    for i, check in enumerate(CHECKS):
        line = first[i].line
        lines.append(f"| {check.name} | {_fmt(first[i].authors)} | {f'`{line.source}`' if line else '-'} | "
                     + " | ".join(_cell(per_row[n][i]) for n in rows) + " |")
    notes = [f"- `{n}` ({ROWS[n].basis}): {ROWS[n].note}" for n in rows if ROWS[n].note]
    return lines + [""] + notes + ([""] if notes else [])


def _figures(per_row: dict[str, list[Result]]) -> list[str]:
    from pna.tools.fidelity import measure
    from pna.tools.fidelity_pipeline import crafted_batch, reductions

    lines = ["## Measured figures", "", "The crafted loss batch (8 images of 8x8 pixels, 3 classes, image i with "
             "8 i pixels ignored) under each reduction; each row's outputs match one of them (check `loss`):", ""]
    lines += [f"- {name}: {value:.5f}" for name, value in reductions(*crafted_batch()).items()]
    lines += ["", "Initial weight std of the first layer of each group, measured on the built model beside the "
              "std of the formula it matches (check `init_pna_head`, `init_heads`):", ""]
    for name in ("voc/fcn_r50_os32_pna", "cityscapes/deeplabv3_r103_os16_pna", "cityscapes/fpn_r103_pna"):
        if name in per_row:
            figures = measure(name)["init_figures"]
            lines.append(f"- `{name}`: " + "; ".join(f"{group} {std:.5f} ({formula})" for group, std, formula in figures))
    return lines + [""]


def all_results() -> dict[str, list[Result]]:
    """Every paper row's checks (the models are built once per row group: a few minutes on 2 cores)."""
    return {n: results(n) for n in ROWS}


def report_markdown(per_row: dict[str, list[Result]] | None = None) -> str:
    """The whole report over every paper row."""
    per_row = per_row or all_results()
    flat = [(n, r) for n, rs in per_row.items() for r in rs if r.compared and not r.same]
    explained = [(n, r) for n, r in flat if r.reason]
    unexplained = [(n, r) for n, r in flat if not r.reason]
    covered = {s for c in CHECKS for s in c.settings}
    missing = sorted({setting for _, setting in audit_lines()} - covered - set(NOT_MEASURED))
    lines = ["# Fidelity: the paper profile, measured, against the audit of the authors' code", "",
             "Generated by `python -m pna fidelity`. The authors' side is `docs/authors_audit.csv` (their value and "
             "its source per config group and setting; per row in `docs/authors_settings.md`), read by "
             "`pna/tools/fidelity_expect.py`. Our side is measured on what each paper config builds: the model "
             "(widths, strides and dilations from a forward pass, dropout kinds, initial weight statistics, coarse-"
             "head passes per training step, input size divisor), its optimiser's parameter groups and scheduler, "
             "the loss of a crafted batch, and crafted images through the training transform and the Trainer's "
             "collate (`pna/tools/fidelity_model.py`, `pna/tools/fidelity_pipeline.py`).", "",
             "Legend: `=` equals the authors' value; **bold**: differs, for the reason listed below; *italics*: a "
             "quoted baseline's own architecture (no config of the authors: shown, not compared). Model checks "
             "are compared on the rows with the authors' architecture (basis code or paper), training checks on "
             "every row.", "",
             f"{len(per_row)} rows x {len(CHECKS)} checks: {len(explained)} differences with a reason, "
             f"{len(unexplained)} unexplained.", ""]
    for key in AUTHORS:
        lines += setting_section(key, {n: per_row[n] for n in ROWS if ROWS[n].setting == key})
    lines += ["## Differences and their reasons", ""]
    lines += [f"- `{n}` {r.check.name}: ours {_fmt(r.ours)}, authors {_fmt(r.authors)}. {r.reason}" for n, r in explained]
    lines += ["", f"Unexplained differences: {len(unexplained)}"]
    lines += [f"- `{n}` {r.check.name}: ours {_fmt(r.ours)}, authors {_fmt(r.authors)}" for n, r in unexplained]
    lines += ["", "## Audit settings not measured here", ""]
    lines += [f"- {setting}: {why}" for setting, why in NOT_MEASURED.items()]
    lines += [f"- {setting}: NO CHECK AND NO REASON" for setting in missing]
    lines += ["", *_figures(per_row), "## Notes", ""] + [f"- {note}" for note in NOTES] + [""]
    return "\n".join(lines)


def unexplained(per_row: dict[str, list[Result]] | None = None) -> list[tuple[str, str]]:
    """(row, check) of every unexplained difference, and ("*", setting) of audit settings with
    neither a check nor a reason for leaving them out."""
    per_row = per_row or all_results()
    out = [(n, r.check.name) for n, rs in per_row.items() for r in rs if not r.explained]
    covered = {s for c in CHECKS for s in c.settings} | set(NOT_MEASURED)
    return out + [("*", s) for s in sorted({s for _, s in audit_lines()} - covered)]


__all__ = ["DEVIATIONS", "NOTES", "NOT_MEASURED", "all_results", "report_markdown", "setting_section", "unexplained"]
