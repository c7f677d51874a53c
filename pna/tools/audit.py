"""The audit of the authors' repository (``docs/authors_audit.csv``) as the fidelity report reads it.

Each line of the audit is (group, setting, value, source, notes): a group is one shipped config of
the authors (``mm/voc/fcn_r50``, ``d2/cityscapes/fpn_r103``, ...) or a whole code base (``mm/*``,
``d2/*``: facts of their PNA head and losses shared by every config of that branch). A row of
:data:`pna.configs.rows.ROWS` reads the group of the setting it trains with (for a two-backbone
setting, the group of its own backbone); a setting missing from that group is looked up in the
code base's ``*`` group. :func:`settings_markdown` writes ``docs/authors_settings.md``: the values
our paper profile takes from the audit, setting by setting, each with its source.

Example::

    >>> line = lookup("deepglobe/fpn_r52_pna", "crop_size")
    >>> line.value.split(" ")[0], line.source
    ('508x508', 'main:configs/deep_globe/pna_fpn_R_52_poly_4k_bs16.yaml:31')
    >>> lookup("voc/fcn_r50_os32_pna", "loss_averaging").group
    'mm/*'
"""
from __future__ import annotations

import csv
import functools
from dataclasses import dataclass

from pna.configs.authors import AUTHORS, AuthorsSetting
from pna.configs.rows import ROWS
from pna.paths import REPO_ROOT

AUDIT_CSV = REPO_ROOT / "docs" / "authors_audit.csv"
SETTINGS_MD = REPO_ROOT / "docs" / "authors_settings.md"
COLUMNS = ["group", "setting", "value", "source", "notes"]
# Our backbone names in a group's name (the last part of a two-backbone setting's groups).
_GROUP_BACKBONE = {"resnet52": "r52", "resnet103": "r103"}


@dataclass(frozen=True)
class AuditLine:
    group: str
    setting: str
    value: str
    source: str
    notes: str


@functools.lru_cache(maxsize=1)
def audit_lines() -> dict[tuple[str, str], AuditLine]:
    """Every line of the audit by (group, setting); a malformed file is a one-line error."""
    with open(AUDIT_CSV, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != COLUMNS:
            raise ValueError(f"{AUDIT_CSV}: columns {reader.fieldnames}, expected {COLUMNS}")
        lines = [AuditLine(**row) for row in reader]
    return {(line.group, line.setting): line for line in lines}


def group_of(config_name: str, backbone: str | None = None) -> str:
    """The audit group of a row's setting; a two-backbone setting's group follows ``backbone``
    (default: the row's registry backbone)."""
    from pna.models.registry import MODELS

    row = ROWS[config_name]
    groups = AUTHORS[row.setting].audit_groups
    if len(groups) == 1:
        return groups[0]
    tag = _GROUP_BACKBONE.get(backbone or MODELS[row.model].backbone, "")
    return next((g for g in groups if g.endswith(f"_{tag}")), groups[0])


def lookup_group(group: str, setting: str) -> AuditLine:
    """The line of ``setting`` in ``group``, else in its code base's ``*`` group; KeyError naming both."""
    lines = audit_lines()
    branch = group.split("/")[0]
    for key in ((group, setting), (f"{branch}/*", setting)):
        if key in lines:
            return lines[key]
    raise KeyError(f"{AUDIT_CSV.name}: no line for setting {setting!r} in group {group!r} or {branch}/*")


def lookup(config_name: str, setting: str) -> AuditLine:
    """The audit line of ``setting`` for the setting row ``config_name`` trains with."""
    return lookup_group(group_of(config_name), setting)


# Which audit settings each AuthorsSetting field is read from (docs/authors_settings.md's tables).
FIELD_SETTINGS: dict[str, tuple[str, ...]] = {
    "backbone": ("backbone",), "stem": ("stem_widths",), "output_stride": ("output_stride",),
    "res5_multigrid": ("res5_multigrid", "dilations"), "head": ("coarse_head",), "head_channels": ("head_channels",),
    "aspp_dilations": ("aspp_dilations",), "window": ("pna_window",), "resize_mode": ("pna_resize_mode",),
    "embed_bias": ("pna_embed_bias",), "aux": ("aux_head", "aux_head_weight"),
    "hard_mining": ("loss_type_per_output", "hard_pixel_mining", "hard_pixel_mining_scope"),
    "loss_mean": ("loss_averaging",), "coarse_twice": ("coarse_head_runs_in_training",),
    "dropout_kind": ("head_dropout", "dropout_kind"), "lr": ("lr",), "weight_decay": ("weight_decay",),
    "decay_rule": ("paramwise_rules",), "poly_power": ("lr_schedule",), "warmup_iters": ("warmup",),
    "clip_grad": ("grad_clip",), "iters": ("max_iters",), "batch_per_gpu": ("batch_per_gpu",), "gpus": ("num_gpus",),
    "crop": ("crop_size",), "train_resize": ("train_resize",), "cat_max_ratio": ("cat_max_ratio",),
    "antialias": ("interpolation",), "hue": ("photometric_distortion",), "pad": ("pad", "size_divisibility"),
    "test_short": ("test_resize",), "drop_path": ("drop_path",),
    "num_outputs_note": ("num_classes", "eval_metric_classes"),
}
# Fields whose value is stated through another one (the train-resize family, the test cap).
_SAME_LINE = {"scale_base": "train_resize", "scale_range": "train_resize", "short_sides": "train_resize",
              "max_size": "train_resize", "crop_tries": "cat_max_ratio", "test_max": "test_short",
              "audit_groups": None, "branch": None, "not_from_code": None}


def _fmt(value) -> str:
    if isinstance(value, tuple) and len(value) > 6:
        return f"{value[0]}..{value[-1]} ({len(value)} values)"
    return "-" if value is None or value == "" else str(value)


def _cell(text: str) -> str:
    return text.replace("|", "/").replace("\n", " ")


def _setting_section(key: str, s: AuthorsSetting) -> list[str]:
    rows = [n for n, r in ROWS.items() if r.setting == key]
    lines = [f"## {key} ({'MMSegmentation 0.27' if s.branch == 'mm' else 'Detectron2'})", "",
             f"Audit group(s): {', '.join(f'`{g}`' for g in s.audit_groups)}. Config file: "
             + "; ".join(f"`{lookup_group(g, 'config_file').value}`" for g in s.audit_groups) + ".",
             f"Rows that train with it: {', '.join(f'`{n}`' for n in rows)}.", "",
             "| field | our value | the audit says | source |", "|---|---|---|---|"]
    for field, settings in FIELD_SETTINGS.items():
        value = getattr(s, field)
        extra = [f"{f} {_fmt(getattr(s, f))}" for f, same in _SAME_LINE.items() if same == field]
        ours = "; ".join([_fmt(value)] + extra)
        source = s.source_of(field)
        for line in _lines_of(s, settings):
            lines.append(f"| {field} | {_cell(ours)} | {_cell(line.value)} | `{line.source}`"
                         + (f"; our value: {_cell(source)}" if source else "") + " |")
            ours, source = '"', ""
    return lines + [""]


def _lines_of(s: AuthorsSetting, settings: tuple[str, ...]) -> list[AuditLine]:
    """The audit lines of ``settings`` over the setting's groups, one per distinct value."""
    out: dict[tuple[str, str], AuditLine] = {}
    for setting in settings:
        for group in s.audit_groups:
            try:
                line = lookup_group(group, setting)
            except KeyError:
                continue
            out.setdefault((setting, line.value), line)
    return list(out.values())


def settings_markdown() -> str:
    """``docs/authors_settings.md``: every AuthorsSetting field beside the audit lines it comes from."""
    head = [
        "# The authors' per-row settings, as our paper profile uses them", "",
        "Generated by `python -m pna fidelity` from `docs/authors_audit.csv` (the audit of liutinglt/PNA: "
        "branch `main` = their Detectron2 code, branch `mmsegmentation` = their MMSegmentation 0.27 fork; "
        "method and findings in `docs/authors_audit_findings.md`) and `pna/configs/authors.py` (the values "
        "the paper profile is built from). Sources are `<branch>:<path>:<line>` in their repository, "
        "`<repo>@<ref>:<path>:<line>` for a framework default, or a section of the paper.", "",
        "Each table lists a field of `pna.configs.authors.AuthorsSetting`, our value, and the audit line(s) "
        "it is read from (`\"` = the same value as the line above). A value that no file of the authors "
        "shows says where it comes from instead. What our pipeline actually builds from these values is "
        "measured in `results/fidelity.md`.", "",
        "Code-base facts shared by every config of a branch (the PNA head, its losses and initialisation) "
        "are the audit's `mm/*` and `d2/*` lines; a group without its own line reads them.", ""]
    body = [line for key, s in AUTHORS.items() for line in _setting_section(key, s)]
    return "\n".join(head + body)
