"""PASCAL VOC 2012: palette ``SegmentationClass`` PNGs, or the SBD-augmented ``SegmentationClassAug``.

Layout (``root`` is ``VOCdevkit/VOC2012`` or a folder holding ``VOCdevkit/VOC2012``)::

    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png           palette PNG, ids 0..20, 255 = void border  ("voc")
    SegmentationClassAug/<id>.png        8-bit grayscale, same ids                  ("voc_aug")
    ImageSets/Segmentation/<split>.txt   train, val, trainval; train_aug (10,582 ids) for voc_aug

``python -m data_prep.voc_aug`` writes ``SegmentationClassAug`` and ``train_aug.txt`` from SBD.

Example:
    >>> ds = VOCSegmentation("data/VOCdevkit/VOC2012", "val")  # doctest: +SKIP
    >>> ds[0]["label"].unique()  # doctest: +SKIP
    tensor([  0,   1,  15, 255])
"""
from __future__ import annotations

from pathlib import Path

from .base import Sample, SegmentationDataset, Transform, read_id_list, require_dir
from .catalog import DatasetInfo, info


def resolve_voc_root(root: str | Path) -> Path:
    """``root`` itself if it holds ``JPEGImages``, else ``root/VOCdevkit/VOC2012`` or ``root/VOC2012``."""
    root = require_dir(Path(root), "PASCAL VOC root")
    for candidate in (root, root / "VOCdevkit" / "VOC2012", root / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    raise FileNotFoundError(
        f"PASCAL VOC root {root} has no JPEGImages folder (nor VOCdevkit/VOC2012/JPEGImages); "
        "expected the VOCdevkit/VOC2012 layout")


class VOCSegmentation(SegmentationDataset):
    """PASCAL VOC 2012 segmentation; ``aug=True`` reads SegmentationClassAug and ``train_aug.txt``."""

    def __init__(self, root: str | Path, split: str, transform: Transform | None = None, aug: bool = False,
                 dataset_info: DatasetInfo | None = None):
        self.root = resolve_voc_root(root)
        list_name = "train_aug" if aug and split == "train" else split
        label_dir = self.root / ("SegmentationClassAug" if aug else "SegmentationClass")
        hint = " (run `python -m data_prep.voc_aug` to make it)" if list_name == "train_aug" else ""
        ids = read_id_list(self.root / "ImageSets" / "Segmentation" / f"{list_name}.txt", hint)
        samples = [Sample(i, self.root / "JPEGImages" / f"{i}.jpg", label_dir / f"{i}.png") for i in ids]
        super().__init__(samples, dataset_info or info("voc_aug" if aug else "voc"), transform)
