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
        "deeplabv3_r101_os16", "deeplabv3_r101_os16_pointrend", "deeplabv3_r101_os16_pna",
        "psp_r101_os16", "upernet_r101", "psp_r101_os16_pna",
        "fpn_swin_t", "fpn_swin_t_pointrend", "fcn_swin_t_pna", "upernet_swin_t",
        "psp_swin_t_pna_nam", "psp_swin_t_pna",
        "fpn_swin_b", "fpn_swin_b_pointrend", "fcn_swin_b_pna", "upernet_swin_b", "psp_swin_b_pna",
    )]
    # Cityscapes was trained in the authors' Detectron2 branch: its "ResNet50/101" are R-52 / R-103.
    rows += [Row("table4", "cityscapes", name, name) for name in (
        "deeplabv3_r52_os16", "deeplabv3_r52_os16_pointrend", "deeplabv3_r52_os16_pna",
        "deeplabv3_r103_os16", "deeplabv3_r103_os16_pointrend", "deeplabv3_r103_os16_pna",
        "fpn_r103", "fpn_r103_pointrend", "fpn_r103_pna",
    )]
    # Not a row of the paper's Table 4: the R-52 FPN + PNA the authors released for Cityscapes, so
    # that their checkpoint has a config to be evaluated with (``pna.evaluate --authors-checkpoint``).
    rows.append(Row("table4", "cityscapes", "fpn_r52_pna", "fpn_r52_pna"))
    # The paper names no DeepGlobe / Trans10k backbone; the authors' Detectron2 configs use R-52.
    rows += [Row("table5", "deepglobe", name, name) for name in ("fpn_r52", "fpn_r52_pointrend", "fpn_r52_pna")]
    # Table 6's PointRend names no coarse head: semantic FPN, as in Table 5.
    rows += [Row("table6", "trans10k", name, name)
             for name in ("deeplabv3plus_r50_os8", "fpn_r52_pointrend", "fpn_r52_pna")]
    rows += [Row("table7", "cocostuff10k", name, name) for name in (
        "deeplabv3_r50_os16", "deeplabv3_r50_os16_pointrend", "deeplabv3_r50_os16_pna")]
    return rows


ROWS: dict[str, Row] = {row.config_name: row for row in _rows()}


# Paper profile, per dataset: which dataset files train and test a row (the training and test
# settings are the authors' per-row settings, pna.configs.authors).
PAPER_DATA = {
    "voc": dict(dataset="voc_aug", eval_dataset="voc", eval_split="val"),
    "cityscapes": dict(dataset="cityscapes", eval_split="val"),
    "cocostuff10k": dict(dataset="cocostuff10k", eval_split="test"),
    # The authors train 7 outputs ("unknown" a class) and score the 6 land classes ("unknown" ignored).
    "deepglobe": dict(dataset="deepglobe", eval_split="test", options={"unknown": "class"},
                      eval_options={"unknown": "ignore"}),
    "trans10k": dict(dataset="trans10k", eval_split="val"),
}
