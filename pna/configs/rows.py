"""The row table: every paper-table row we train, and every fact about it, in one place.

A :class:`Row` says which paper table it belongs to, the dataset, its name (unique within the
dataset; the config name is ``"<dataset>/<name>"``), the registry model it builds
(:mod:`pna.models.registry`), how the paper prints it (method and backbone, the keys of
``results/paper_numbers.csv``), which of the authors' settings it trains with
(:data:`pna.configs.authors.AUTHORS`), and where that setup comes from (``basis``):

* ``"code"``: the authors shipped a config for this row (docs/authors_settings.md names the file,
  docs/authors_audit.csv its ``config_file`` line);
* ``"paper"``: the paper reports the row as a result of its method, but the authors' code has no
  config for it (the audit's "not found" lines: the NAM-only ablations and Table 2's windows, VOC
  rows of the MMSeg branch, which has no NAM-only switch and only window 9; FCN + PNA on Swin); it
  trains with the setting of the shipped row it varies;
* ``"inferred"``: a baseline the paper quotes; we train it with the setting of the PNA row it is
  compared with (same backbone, stride, schedule, augmentation), so the refinement is the only
  difference.

Rows the paper quotes from other works with no public re-implementation here (EBLNet, SegFix, FaPN,
GLNet, MagNet, ISDNet, TransLab: :data:`CITED_ONLY`) have no row: their numbers live only in
``results/paper_numbers.csv``. SegFix is re-implemented as a refiner of any coarse head
(:mod:`pna.configs.refiners`, notebook 08), not as a table row.

Example::

    >>> row = ROWS["cityscapes/fpn_r103_pna"]
    >>> row.table, row.model, row.setting, row.basis, row.method
    ('table4', 'fpn_r103_pna', 'cityscapes/fpn', 'code', 'FPN + PNA (ours)')
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pna.data.deepglobe import AUTHORS_CLASSES as DEEPGLOBE_AUTHORS_CLASSES

BASES = ("code", "paper", "inferred")
CITED_ONLY = ("SegFix", "EBLNet", "FaPN", "GLNet", "MagNet", "ISDNet", "Translab")


@dataclass(frozen=True)
class Row:
    table: str
    dataset: str                 # voc | cityscapes | deepglobe | trans10k | cocostuff10k
    name: str                    # unique within the dataset
    model: str                   # pna.models.create_model name
    setting: str                 # key of pna.configs.authors.AUTHORS it trains with
    basis: str                   # "code" | "paper" | "inferred" (module docstring)
    method: str | None = None    # as printed in the paper's table; None: not a printed row
    printed_backbone: str = ""   # as printed ("" when the table prints none)
    overrides: dict = field(default_factory=dict)  # model overrides (e.g. the window of Table 2)
    note: str = ""

    def __post_init__(self) -> None:
        if self.basis not in BASES:
            raise ValueError(f"row {self.config_name}: basis must be one of {BASES}, got {self.basis!r}")

    @property
    def config_name(self) -> str:
        return f"{self.dataset}/{self.name}"


_QUOTED = "quoted baseline (no authors' config): trained with the setting of the PNA row it is compared with"
_NAM_ONLY = ("NAM-only ablation (SAM replaced by the embedded feature) of the shipped row; from the paper: the "
             "authors' MMSeg branch, which trained the VOC rows, has no NAM-only switch (only their Detectron2 "
             "code has one, MODEL.PNA_HEAD.USE_SA) and no config for this row")


def _rows() -> list[Row]:
    voc = lambda *a, **k: Row("table1", "voc", *a, **k)  # noqa: E731
    rows = [
        voc("fcn_r50_os32", "fcn_r50_os32", "voc/fcn", "inferred", "FCN-OS-32", "ResNet50",
            note="the PNA row's coarse head alone (Table 1's P0 baseline)"),
        voc("fcn_r50_os8", "fcn_r50_os8", "voc/fcn", "inferred", "FCN-OS-8", "ResNet50",
            note="FCN at output stride 8, else as the FCN + PNA row"),
        voc("fpn_r50_pointrend", "fpn_r50_pointrend", "voc/fcn", "inferred", "FPN + PointRend", "ResNet50",
            note=_QUOTED),
        # The window is stated so that Table 2's L=9 row is the same training (one shared run).
        voc("fcn_r50_os32_pna_nam", "fcn_r50_os32_pna_nam", "voc/fcn", "paper", "FCN-OS-32 + Ours (NAM)", "ResNet50",
            {"window_size": 9}, note=_NAM_ONLY),
        voc("fcn_r50_os32_pna", "fcn_r50_os32_pna", "voc/fcn", "code", "FCN-OS-32 + Ours (NAM + SAM)", "ResNet50"),
    ]
    rows += [Row("table2", "voc", f"fcn_r50_os32_pna_nam_w{w}", "fcn_r50_os32_pna_nam", "voc/fcn", "paper",
                 f"FCN-OS-32 + Ours (NAM), window {w}", "ResNet50", {"window_size": w},
                 note=f"window {w} ablation of the NAM-only row; from the paper (Table 2): no config of the "
                      f"authors' has a NAM-only model, and every shipped MMSeg config uses window 9")
             for w in (5, 7, 9, 11)]
    t3 = lambda name, setting, basis, method, backbone, note="": Row(  # noqa: E731
        "table3", "voc", name, name, setting, basis, method, backbone, note=note)
    rows += [
        t3("deeplabv3_r101_os16", "voc/deeplabv3", "inferred", "DeeplabV3", "ResNet101", _QUOTED),
        t3("deeplabv3_r101_os16_pointrend", "voc/deeplabv3", "inferred", "DeeplabV3 + PointRend", "ResNet101", _QUOTED),
        t3("deeplabv3_r101_os16_pna", "voc/deeplabv3", "code", "DeeplabV3 + PNA (ours)", "ResNet101"),
        t3("psp_r101_os16", "voc/psp", "inferred", "PSP", "ResNet101", _QUOTED),
        t3("upernet_r101", "voc/psp", "inferred", "PSP + FPN (UperNet)", "ResNet101", _QUOTED),
        t3("psp_r101_os16_pna", "voc/psp", "code", "PSP + PNA (ours)", "ResNet101"),
    ]
    for tag, printed in (("swin_t", "Swin-T"), ("swin_b", "Swin-B")):
        setting = f"voc/psp_{tag}"
        rows += [
            t3(f"fpn_{tag}", setting, "inferred", "FPN", printed, _QUOTED + " (the Swin schedule)"),
            t3(f"fpn_{tag}_pointrend", setting, "inferred", "FPN + PointRend", printed, _QUOTED + " (the Swin schedule)"),
            t3(f"fcn_{tag}_pna", setting, "paper", "FCN + PNA (ours)", printed,
               "FCN + PNA on Swin: from the paper (Table 3), no shipped config; the Swin PSP + PNA setting "
               "with the FCN head"),
            t3(f"upernet_{tag}", setting, "inferred", "FPN + PSP (UperNet)", printed, _QUOTED + " (the Swin schedule)"),
        ]
        if tag == "swin_t":
            rows.append(t3("psp_swin_t_pna_nam", setting, "paper", "PSP + PNA (ours, NAM)", printed, _NAM_ONLY))
        rows.append(t3(f"psp_{tag}_pna", setting, "code",
                       "PSP + PNA (ours, NAM+SAM)" if tag == "swin_t" else "PSP + PNA (ours)", printed))
    # Cityscapes was trained in the authors' Detectron2 branch: its "ResNet50/101" are R-52 / R-103.
    for depth, printed in (("r52", "ResNet50"), ("r103", "ResNet101")):
        for suffix, basis, method in (("", "inferred", "DeeplabV3"), ("_pointrend", "inferred", "DeeplabV3 + PointRend"),
                                      ("_pna", "code", "DeeplabV3 + PNA (ours)")):
            name = f"deeplabv3_{depth}_os16{suffix}"
            rows.append(Row("table4", "cityscapes", name, name, "cityscapes/deeplabv3", basis, method, printed,
                            note="" if basis == "code" else _QUOTED))
    for suffix, basis, method in (("", "inferred", "FPN"), ("_pointrend", "inferred", "FPN + PointRend"),
                                  ("_pna", "code", "FPN + PNA (ours)")):
        rows.append(Row("table4", "cityscapes", f"fpn_r103{suffix}", f"fpn_r103{suffix}", "cityscapes/fpn", basis,
                        method, "ResNet101", note="" if basis == "code" else _QUOTED))
    rows.append(Row("table4", "cityscapes", "fpn_r52_pna", "fpn_r52_pna", "cityscapes/fpn", "code",
                    note="not a row of the paper's Table 4: the R-52 model the authors released for Cityscapes, "
                         "so that their checkpoint has a config to be evaluated with"))
    # The paper names no DeepGlobe / Trans10k backbone; the authors' Detectron2 configs use R-52.
    scoring = ("scored as the paper's text says (MagNet's metric: the 6 land classes, unknown ground truth kept in "
               "the matrix) on MagNet's test tiles; the authors' evaluator scores label ids 0..5, recorded in MagNet's "
               "encoding (mIoU_authors: barren dropped) and with unknown last beside it")
    for suffix, basis, method in (("", "inferred", "FPN*"), ("_pointrend", "inferred", "FPN + PointRend*"),
                                  ("_pna", "code", "FPN + PNA (ours)")):
        rows.append(Row("table5", "deepglobe", f"fpn_r52{suffix}", f"fpn_r52{suffix}", "deepglobe/fpn", basis, method,
                        note=scoring if basis == "code" else f"{_QUOTED}; {scoring}"))
    rows += [
        Row("table6", "trans10k", "deeplabv3plus_r50_os8", "deeplabv3plus_r50_os8", "trans10k/fpn", "inferred",
            "Deeplabv3+", note=_QUOTED + " (DeepLabV3+ on mmseg's ResNetV1c-50 at OS8, the common DeepLabV3+ setup)"),
        # Table 6's PointRend names no coarse head: semantic FPN, as in Table 5.
        Row("table6", "trans10k", "fpn_r52_pointrend", "fpn_r52_pointrend", "trans10k/fpn", "inferred", "PointRend",
            note=_QUOTED + "; the paper names no coarse head: semantic FPN as in Table 5"),
        Row("table6", "trans10k", "fpn_r52_pna", "fpn_r52_pna", "trans10k/fpn", "code", "FPN + PNA (ours)"),
    ]
    # Printed "DeeplabV3+"; the text compares against DeepLabV3 as the coarse head.
    for suffix, basis, method in (("", "inferred", "DeeplabV3+"), ("_pointrend", "inferred", "DeeplabV3 + PointRend"),
                                  ("_pna", "code", "DeeplabV3 + PNA (ours)")):
        name = f"deeplabv3_r50_os16{suffix}"
        rows.append(Row("table7", "cocostuff10k", name, name, "cocostuff10k/deeplabv3", basis, method, "ResNet50",
                        note="" if basis == "code" else _QUOTED))
    return rows


ROWS: dict[str, Row] = {row.config_name: row for row in _rows()}


# Paper profile, per dataset: which dataset files train and test a row (the training and test
# settings are the authors' per-row settings, pna.configs.authors).
PAPER_DATA = {
    "voc": dict(dataset="voc_aug", eval_dataset="voc", eval_split="val"),
    "cityscapes": dict(dataset="cityscapes", eval_split="val"),
    "cocostuff10k": dict(dataset="cocostuff10k", eval_split="test"),
    # The authors train 7 outputs ("unknown" a class, their config). The headline mIoU is MagNet's, which
    # the paper follows: the 6 land classes averaged, unknown ground truth kept in the confusion matrix
    # (so "unknown" is read as class 6 when scoring too). authors_classes: the class list of the authors'
    # Detectron2 evaluator, whose number is recorded beside ours (mIoU_authors): DeepGlobe label ids 0..5
    # of their 6-name dict read in MagNet's encoding (unknown + 5 land classes, in our ids; the other
    # reading, the 6 land classes, is recorded too: pna.data.deepglobe), Trans10k all 3.
    "deepglobe": dict(dataset="deepglobe", eval_split="test", options={"unknown": "class"},
                      eval_options={"unknown": "class"}, authors_classes=DEEPGLOBE_AUTHORS_CLASSES),
    "trans10k": dict(dataset="trans10k", eval_split="val", authors_classes=(0, 1, 2)),
}
