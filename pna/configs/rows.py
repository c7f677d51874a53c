"""Every paper-table row we train, and the paper settings of each dataset (SPEC.md, "Training").

A row is (table, dataset key, row name, registry model name, model overrides). Its config name is
``"<dataset key>/<row name>"``, e.g. ``"voc/fcn_r50_os32_pna"``. Rows the paper quotes from other
works without a public re-implementation here (EBLNet, SegFix, FaPN, GLNet, MagNet, ISDNet,
TransLab) have no config: their numbers live only in results/paper_numbers.csv.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Row:
    table: str
    dataset: str         # dataset key: voc | cityscapes | deepglobe | trans10k | cocostuff10k
    name: str            # row name, unique within the dataset
    model: str           # pna.models.create_model name
    overrides: dict = field(default_factory=dict)

    @property
    def config_name(self) -> str:
        return f"{self.dataset}/{self.name}"

    @property
    def is_swin(self) -> bool:
        return "swin" in self.model


def _rows() -> list[Row]:
    rows = [
        Row("table1", "voc", "fcn_r50_os32", "fcn_r50_os32"),
        Row("table1", "voc", "fcn_r50_os8", "fcn_r50_os8"),
        Row("table1", "voc", "fpn_r50_pointrend", "fpn_r50_pointrend"),
        # The window is stated so that Table 2's L=9 row is the same training (one shared run).
        Row("table1", "voc", "fcn_r50_os32_pna_nam", "fcn_r50_os32_pna_nam", {"window_size": 9}),
        Row("table1", "voc", "fcn_r50_os32_pna", "fcn_r50_os32_pna"),
    ]
    rows += [Row("table2", "voc", f"fcn_r50_os32_pna_nam_w{w}", "fcn_r50_os32_pna_nam", {"window_size": w})
             for w in (5, 7, 9, 11)]
    rows += [Row("table3", "voc", name, name) for name in (
        "deeplabv3_r101_os8", "deeplabv3_r101_os8_pointrend", "deeplabv3_r101_os8_pna",
        "psp_r101_os8", "upernet_r101", "psp_r101_os8_pna",
        "fpn_swin_t", "fpn_swin_t_pointrend", "fcn_swin_t_pna", "upernet_swin_t",
        "psp_swin_t_pna_nam", "psp_swin_t_pna",
        "fpn_swin_b", "fpn_swin_b_pointrend", "fcn_swin_b_pna", "upernet_swin_b", "psp_swin_b_pna",
    )]
    rows += [Row("table4", "cityscapes", name, name) for name in (
        "deeplabv3_r50_os8", "deeplabv3_r50_os8_pointrend", "deeplabv3_r50_os8_pna",
        "deeplabv3_r101_os8", "deeplabv3_r101_os8_pointrend", "deeplabv3_r101_os8_pna",
        "fpn_r101", "fpn_r101_pointrend", "fpn_r101_pna",
    )]
    # The paper does not name the DeepGlobe / Trans10k backbone; ResNet-50 is our choice.
    rows += [Row("table5", "deepglobe", name, name) for name in ("fpn_r50", "fpn_r50_pointrend", "fpn_r50_pna")]
    # Table 6's PointRend names no coarse head: semantic FPN, as in Table 5.
    rows += [Row("table6", "trans10k", name, name) for name in ("deeplabv3plus_r50", "fpn_r50_pointrend", "fpn_r50_pna")]
    rows += [Row("table7", "cocostuff10k", name, name) for name in (
        "deeplabv3_r50_os8", "deeplabv3_r50_os8_pointrend", "deeplabv3_r50_os8_pna")]
    return rows


ROWS: dict[str, Row] = {row.config_name: row for row in _rows()}


# Paper profile, per dataset (SPEC.md "Training"): crop (h, w), iterations, evaluation.
PAPER_DATA = {
    "voc": dict(dataset="voc_aug", eval_dataset="voc", eval_split="val", crop=(512, 512),
                iters=20000, eval_short_side=512),
    "cityscapes": dict(dataset="cityscapes", eval_split="val", crop=(512, 1024), iters=90000,
                       eval_short_side=None),      # tested at full 1024x2048
    "cocostuff10k": dict(dataset="cocostuff10k", eval_split="test", crop=(512, 512), iters=40000,
                         eval_short_side=512),
    "deepglobe": dict(dataset="deepglobe", eval_split="test", crop=(508, 508), iters=4000,
                      eval_short_side=None),       # the whole 2448x2448 image at once
    "trans10k": dict(dataset="trans10k", eval_split="val", crop=(512, 512), iters=8000,
                     eval_short_side=512),
}

# Datasets whose authors' configs use hard pixel mining (top 20% of pixel losses), SPEC "Losses".
HARD_PIXEL_DATASETS = {"deepglobe", "trans10k"}

# Datasets the authors trained in their Detectron2 branch: no auxiliary FCN head there (SPEC
# "Losses": only the MMSeg-style VOC / COCO-Stuff models add it); Trans10k resizes P_{m-1}
# bilinearly (SPEC "One refinement stage"). Paper profile only: the smoke runs stay shared.
NO_AUX_DATASETS = {"cityscapes", "deepglobe", "trans10k"}
PAPER_MODEL_OVERRIDES = {"trans10k": {"resize_mode": "bilinear"}}
