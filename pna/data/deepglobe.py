"""DeepGlobe land cover: RGB ``*_mask.png`` colours -> class ids 0..5; ``unknown`` (black) -> 6 or 255.

Layout (the challenge's ``land-train`` folder; lists from ``python -m data_prep.deepglobe``)::

    land-train/<id>_sat.jpg, land-train/<id>_mask.png   RGB masks, 7 colours
    splits/train.txt, val.txt, test.txt                  454 / 207 / 142 ids
    labels/<id>.png                                      (optional) ids 0..5, 255 = unknown

Colour channels are thresholded at 128 (the challenge warns values may not be exactly 0/255).
The dataset has 7 classes, as the authors train it: ``unknown="class"`` reads unknown as class 6
(their training; the paper profile scores with it too), ``unknown="ignore"`` (the default) as 255,
so scoring skips those pixels. The mIoU runs over the 6 land classes (``eval_classes``); with
unknown read as a class, unknown ground truth stays in the confusion matrix (a land class predicted
there is a false positive), as MagNet's metric, which the paper follows, keeps it
(``VinAIResearch/MagNet@7f5b876:magnet/utils/metrics.py:22-23,77``). Converted
``labels/<id>.png`` hold 255 for unknown and follow the same option.

The authors' Detectron2 evaluator scores label ids 0..5 (a 6-name class dict), but which classes
those are depends on their unshipped label files (docs/authors_audit_findings.md, (e)). Their colour
table lists MagNet's ids (0 unknown ... 6 barren): :data:`AUTHORS_CLASSES` reads it so (barren
dropped); :data:`AUTHORS_CLASSES_UNKNOWN_LAST` is the other reading (unknown dropped), recorded
beside it (:attr:`DeepGlobeLandCover.authors_readings`). Both are in our ids.

Example:
    >>> ds = DeepGlobeLandCover("data/deepglobe", "val")  # doctest: +SKIP
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .base import Sample, SegmentationDataset, Transform, open_image, read_id_list, require_dir
from .catalog import DEEPGLOBE_COLOURS, DEEPGLOBE_UNKNOWN, IGNORE_INDEX, info

Colour = tuple[int, int, int]


def colour_code(rgb: np.ndarray) -> np.ndarray:
    """Each pixel's channels thresholded at 128, packed as a 3-bit code R*4 + G*2 + B."""
    bits = (rgb[..., :3] >= 128).astype(np.uint8)
    return bits[..., 0] * 4 + bits[..., 1] * 2 + bits[..., 2]


def decode_colour_mask(path: Path, colour_to_id: dict[Colour, int]) -> np.ndarray:
    """Class ids of an RGB mask whose (thresholded) colours are the keys of ``colour_to_id``."""
    img = open_image(path)
    if img.mode not in ("RGB", "RGBA", "P"):
        raise ValueError(f"mask {path} has mode {img.mode}; expected an RGB colour mask")
    code = colour_code(np.asarray(img.convert("RGB")))
    table = np.full(8, -1, dtype=np.int16)
    for colour, class_id in colour_to_id.items():
        table[colour_code(np.array(colour, dtype=np.uint8))] = class_id
    out = table[code]
    if (out < 0).any():
        seen = {tuple(int(v) * 255 for v in ((c >> 2) & 1, (c >> 1) & 1, c & 1)) for c in np.unique(code[out < 0])}
        raise ValueError(
            f"mask {path} holds colours {sorted(seen)} (after thresholding at 128) that are not classes of "
            f"this dataset; expected only {sorted(colour_to_id)}")
    return out.astype(np.uint8)


DEEPGLOBE_COLOUR_TO_ID = {c: i for i, c in enumerate(DEEPGLOBE_COLOURS)} | {DEEPGLOBE_UNKNOWN: IGNORE_INDEX}
UNKNOWN_ID = len(DEEPGLOBE_COLOURS)  # 6
UNKNOWN_MODES = ("ignore", "class")
# MagNet's class ids (0 unknown, 1 urban, 2 agriculture, 3 rangeland, 4 forest, 5 water, 6 barren:
# VinAIResearch/MagNet@7f5b876:magnet/dataset/deepglobe.py:10-17) as our ids.
MAGNET_TO_OURS = (UNKNOWN_ID, 0, 1, 2, 3, 4, 5)
NUM_AUTHORS_NAMES = 6  # their evaluator's class list (main:pna/datasets/register_deep_globe.py:33-40)
AUTHORS_CLASSES = MAGNET_TO_OURS[:NUM_AUTHORS_NAMES]  # (6, 0, 1, 2, 3, 4): unknown + 5 land classes
AUTHORS_CLASSES_UNKNOWN_LAST = tuple(range(NUM_AUTHORS_NAMES))  # the 6 land classes


class DeepGlobeLandCover(SegmentationDataset):
    """DeepGlobe land cover: 6 land classes + ``unknown`` (class 6, or ignored)."""

    # The other reading of the authors' evaluator, scored beside ``mIoU_authors`` (pna.engine.evaluate).
    authors_readings = {"mIoU_authors_unknown_last": AUTHORS_CLASSES_UNKNOWN_LAST}

    def __init__(self, root: str | Path, split: str, transform: Transform | None = None,
                 ids: Sequence[str] | None = None, unknown: str = "ignore"):
        if unknown not in UNKNOWN_MODES:
            raise ValueError(f"DeepGlobe: unknown must be one of {UNKNOWN_MODES}, got {unknown!r}")
        self.unknown = unknown
        self.root = require_dir(Path(root), "DeepGlobe root")
        tiles = require_dir(self.root / "land-train", "DeepGlobe tiles (land-train)")
        if ids is None:
            ids = read_id_list(self.root / "splits" / f"{split}.txt",
                               " (run `python -m data_prep.deepglobe` to make the split lists)")
        labels = self.root / "labels"
        self.use_png = labels.is_dir()
        samples = [Sample(i, tiles / f"{i}_sat.jpg", labels / f"{i}.png" if self.use_png else tiles / f"{i}_mask.png")
                   for i in ids]
        super().__init__(samples, info("deepglobe"), transform)

    def read_label(self, path: Path) -> np.ndarray:
        label = super().read_label(path) if self.use_png else decode_colour_mask(path, DEEPGLOBE_COLOUR_TO_ID)
        if self.unknown == "class":
            label = np.where(label == IGNORE_INDEX, UNKNOWN_ID, label).astype(np.uint8)
        return label
