"""Cityscapes fine annotations: raw ``*_gtFine_labelIds.png`` mapped to the 19 train ids.

Layout::

    leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png
    gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png       raw ids 0..33 (mode L)
    gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelTrainIds.png  (optional) 0..18, 255

With ``label_type="auto"`` the labelTrainIds files are read when present
(``python -m data_prep.cityscapes`` writes them), else the labelIds are mapped on the fly.

Example:
    >>> ds = CityscapesSegmentation("data/cityscapes", "val")  # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Sample, SegmentationDataset, Transform, lookup, read_index_png, require_dir
from .catalog import CITYSCAPES_NUM_LABEL_IDS, CITYSCAPES_TRAIN, IGNORE_INDEX, info


def label_id_to_train_id() -> np.ndarray:
    """Lookup table over raw labelIds 0..33: train id, or 255 for the classes not evaluated."""
    table = np.full(CITYSCAPES_NUM_LABEL_IDS, IGNORE_INDEX, dtype=np.int16)
    for train_id, (_, label_id, _) in enumerate(CITYSCAPES_TRAIN):
        table[label_id] = train_id
    return table


LABEL_TYPES = ("auto", "labelIds", "labelTrainIds")


class CityscapesSegmentation(SegmentationDataset):
    """Cityscapes gtFine, 19 classes."""

    def __init__(self, root: str | Path, split: str, transform: Transform | None = None, label_type: str = "auto"):
        if label_type not in LABEL_TYPES:
            raise ValueError(f"label_type must be one of {LABEL_TYPES}, got {label_type!r}")
        self.root = require_dir(Path(root), "Cityscapes root")
        image_dir = require_dir(self.root / "leftImg8bit" / split, f"Cityscapes images of split {split!r}")
        label_dir = require_dir(self.root / "gtFine" / split, f"Cityscapes gtFine labels of split {split!r}")
        images = sorted(image_dir.glob("*/*_leftImg8bit.png"))
        if not images:
            raise FileNotFoundError(f"no */*_leftImg8bit.png images under {image_dir}")
        if label_type == "auto":
            first = images[0].name.replace("_leftImg8bit.png", "_gtFine_labelTrainIds.png")
            label_type = "labelTrainIds" if (label_dir / images[0].parent.name / first).is_file() else "labelIds"
        self.label_type = label_type
        samples = []
        for path in images:
            stem = path.name[: -len("_leftImg8bit.png")]
            samples.append(Sample(stem, path, label_dir / path.parent.name / f"{stem}_gtFine_{label_type}.png"))
        self._table = label_id_to_train_id()
        super().__init__(samples, info("cityscapes"), transform)

    def read_label(self, path: Path) -> np.ndarray:
        if self.label_type == "labelIds":
            return lookup(read_index_png(path), self._table, path)
        return super().read_label(path)
