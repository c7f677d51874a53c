"""The coarse heads of the refiners table and the config of each model scored on each
(:mod:`pna.analysis.refiners`): the paper profile's rows, and the smoke profile's stand-ins.

Example::

    >>> HEADS["voc_fcn_os32"].configs("smoke")["segfix"]
    'voc/segfix_hrnet48'
"""
from __future__ import annotations

from dataclasses import dataclass

ROLES = ("coarse", "pointrend", "pna", "segfix")


@dataclass(frozen=True)
class CoarseHead:
    """A coarse head and the config of each model scored on it (the paper profile's, and the smoke
    profile's stand-ins where they differ: ``smoke`` = (coarse, pointrend, pna))."""

    key: str
    title: str
    coarse: str
    pointrend: str
    pna: str
    segfix: str
    smoke: tuple[str, str, str] | None = None
    note: str = ""        # said in every profile
    smoke_note: str = ""  # what the smoke stand-ins are

    def notes(self, profile: str) -> str:
        return "; ".join(n for n in (self.note, self.smoke_note if profile == "smoke" else "") if n)

    def configs(self, profile: str) -> dict[str, str]:
        trio = self.smoke if profile == "smoke" and self.smoke else (self.coarse, self.pointrend, self.pna)
        return {**dict(zip(ROLES[:3], trio)), "segfix": self.segfix}

    @property
    def dataset(self) -> str:
        return self.coarse.split("/")[0]


_STAND_IN = "smoke stand-ins: R-52 rows for R-103 (the same half-width ResNet-10 at smoke scale)"
HEADS: dict[str, CoarseHead] = {head.key: head for head in (
    CoarseHead("voc_fcn_os32", "FCN-OS-32, VOC", "voc/fcn_r50_os32", "voc/fpn_r50_pointrend", "voc/fcn_r50_os32_pna",
               "voc/segfix_hrnet48", note="PointRend: Table 1's, on semantic FPN (the paper has no FCN + PointRend)"),
    CoarseHead("cityscapes_deeplabv3", "DeepLabV3, Cityscapes", "cityscapes/deeplabv3_r103_os16",
               "cityscapes/deeplabv3_r103_os16_pointrend", "cityscapes/deeplabv3_r103_os16_pna",
               "cityscapes/segfix_hrnet48",
               smoke=("cityscapes/deeplabv3_r52_os16", "cityscapes/deeplabv3_r52_os16_pointrend",
                      "cityscapes/deeplabv3_r52_os16_pna"), smoke_note=_STAND_IN),
    CoarseHead("cityscapes_fpn", "semantic FPN, Cityscapes", "cityscapes/fpn_r103", "cityscapes/fpn_r103_pointrend",
               "cityscapes/fpn_r103_pna", "cityscapes/segfix_hrnet48",
               smoke=("deepglobe/fpn_r52", "deepglobe/fpn_r52_pointrend", "cityscapes/fpn_r52_pna"),
               smoke_note=_STAND_IN + "; DeepGlobe's FPN R-52 for the baseline (trained by notebook 04) and its FPN + "
                                      "PointRend R-52: Detectron2's FPN head (GroupNorm, no dropout) like the "
                                      "Cityscapes rows, the same smoke models but the name"),
)}
