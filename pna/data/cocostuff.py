"""COCO-Stuff 10k: per-image ``.mat`` files (key ``S``) over the 182 COCO-Stuff ids -> 171 train ids.

Layout (the official ``cocostuff-10k-v1.1.zip``)::

    images/<id>.jpg
    annotations/<id>.mat       S: HxW label map; v1.1: 0 = unlabeled, 1..182 = COCO-Stuff ids
    imageLists/train.txt, test.txt   (9,000 / 1,000 ids; split "val" reads test.txt)
    labels/<id>.png            (optional, from ``python -m data_prep.cocostuff10k``) train ids, 255

The 11 thing ids COCO never annotated and ``unlabeled`` become 255; the other 171 ids, in order,
become train ids 0..170. Release v1.0 (80 thing ids, 1 = unlabeled) is read with ``mat_version="1.0"``.

Example:
    >>> ds = CocoStuff10k("data/cocostuff-10k-v1.1", "train")  # doctest: +SKIP
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from .base import Sample, SegmentationDataset, Transform, lookup, read_id_list, require_dir
from .catalog import COCOSTUFF_IDS, IGNORE_INDEX, info

MAT_VERSIONS = ("1.1", "1.0")


def cocostuff_to_train_id(mat_version: str = "1.1") -> np.ndarray:
    """Lookup table from the values of ``S`` to train ids 0..170 (255 = ignored)."""
    if mat_version == "1.1":  # 0 unlabeled, 1..182 the 182 ids with 11 unused thing slots
        table = np.full(183, IGNORE_INDEX, dtype=np.int16)
        used = [k + 1 for k, name in enumerate(COCOSTUFF_IDS) if name is not None]
        table[used] = np.arange(len(used))
        return table
    if mat_version == "1.0":  # 1 unlabeled, 2..81 the 80 things, 82..172 the 91 stuff classes
        table = np.full(173, IGNORE_INDEX, dtype=np.int16)
        table[2:] = np.arange(171)
        table[0] = -1  # v1.0 never writes 0
        return table
    raise ValueError(f"mat_version must be one of {MAT_VERSIONS}, got {mat_version!r}")


def read_cocostuff_mat(path: Path) -> np.ndarray:
    """The raw ``S`` label map of one annotation file, as int64."""
    try:
        mat = scipy.io.loadmat(path)
    except Exception as err:  # scipy raises several types for a bad file
        raise ValueError(f"cannot read COCO-Stuff annotation {path}: {err}") from err
    if "S" not in mat:
        keys = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"COCO-Stuff annotation {path} has no key 'S' (keys: {keys}); expected the label map in S")
    s = np.asarray(mat["S"])
    if s.ndim != 2:
        raise ValueError(f"COCO-Stuff annotation {path}: S has shape {s.shape}; expected an HxW label map")
    if not np.all(np.mod(s, 1) == 0):
        raise ValueError(f"COCO-Stuff annotation {path}: S holds non-integer values; expected class ids")
    return s.astype(np.int64)


class CocoStuff10k(SegmentationDataset):
    """COCO-Stuff 10k, 171 classes; reads converted PNGs from ``labels/`` when that folder exists."""

    def __init__(self, root: str | Path, split: str, transform: Transform | None = None, mat_version: str = "1.1"):
        self.root = require_dir(Path(root), "COCO-Stuff 10k root")
        self._table = cocostuff_to_train_id(mat_version)
        self.mat_version = mat_version
        list_name = {"val": "test"}.get(split, split)
        ids = read_id_list(self.root / "imageLists" / f"{list_name}.txt")
        self.use_png = (self.root / "labels").is_dir()
        samples = [
            Sample(i, self.root / "images" / f"{i}.jpg",
                   self.root / "labels" / f"{i}.png" if self.use_png else self.root / "annotations" / f"{i}.mat")
            for i in ids
        ]
        super().__init__(samples, info("cocostuff10k"), transform)

    def read_label(self, path: Path) -> np.ndarray:
        if path.suffix == ".png":
            return super().read_label(path)
        s = read_cocostuff_mat(path)
        try:
            return lookup(s, self._table, path)
        except ValueError as err:
            raise ValueError(
                f"{err}. Expected release v{self.mat_version} values 0..{len(self._table) - 1} "
                f"(pass mat_version='1.0' for v1.0 files, where 1 = unlabeled)") from err
