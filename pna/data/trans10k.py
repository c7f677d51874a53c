"""Trans10K (v1): RGB masks, red (255,0,0) = things (1), white = stuff (2), black = background (0).

Layout (the official download)::

    train/images/<id>.jpg        train/masks/<id>_mask.png          5,000
    validation/images/...        validation/masks/...               1,000  (split "val")
    test/images/...              test/masks/...                     4,428
    <split>/labels/<id>.png      (optional, ``python -m data_prep.trans10k``) ids 0..2

Images are found recursively under the split folder (``**/images/*.jpg``), so ``easy``/``hard``
subfolders are read too. The mIoU averages the two transparent classes (background excluded).

Example:
    >>> ds = Trans10k("data/Trans10K", "val")  # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import Sample, SegmentationDataset, Transform, require_dir
from .catalog import TRANS10K_COLOURS, info
from .deepglobe import decode_colour_mask

SPLIT_FOLDERS = {"train": "train", "val": "validation", "validation": "validation", "test": "test"}
TRANS10K_COLOUR_TO_ID = {c: i for i, c in enumerate(TRANS10K_COLOURS)}


def converted_label_path(image: Path) -> Path:
    """Where ``data_prep.trans10k`` puts the index PNG of an image: ``.../labels/<id>.png``."""
    return image.parent.parent / "labels" / f"{image.stem}.png"


class Trans10k(SegmentationDataset):
    """Trans10K, 3 classes, mIoU over things and stuff."""

    def __init__(self, root: str | Path, split: str, transform: Transform | None = None):
        if split not in SPLIT_FOLDERS:
            raise ValueError(f"Trans10k split must be one of {sorted(SPLIT_FOLDERS)}, got {split!r}")
        self.root = require_dir(Path(root), "Trans10K root")
        split_dir = require_dir(self.root / SPLIT_FOLDERS[split], f"Trans10K split {split!r}")
        images = sorted(split_dir.glob("**/images/*.jpg"))
        if not images:
            raise FileNotFoundError(f"no images/*.jpg found under {split_dir}")
        samples = []
        for img in images:
            converted = converted_label_path(img)
            label = converted if converted.is_file() else img.parent.parent / "masks" / f"{img.stem}_mask.png"
            sample_id = "/".join(p for p in img.relative_to(split_dir).with_suffix("").parts if p != "images")
            samples.append(Sample(sample_id, img, label))
        super().__init__(samples, info("trans10k"), transform)

    def read_label(self, path: Path) -> np.ndarray:
        if path.parent.name == "labels":
            return super().read_label(path)
        return decode_colour_mask(path, TRANS10K_COLOUR_TO_ID)
