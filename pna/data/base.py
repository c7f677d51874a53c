"""The shared reading path of every dataset: file pairs in, checked ``{"image", "label", "id"}`` out.

A dataset is a list of :class:`Sample` (id, image file, label file) plus a ``read_label`` that
turns one label file into train ids (``uint8``, 255 = ignore). Everything a user can get wrong on
disk (a missing root or list, an image without its label, an unreadable file, sizes that differ,
label values outside the dataset's ids) raises an error naming the file and what was expected.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset
from torchvision import tv_tensors

from .catalog import IGNORE_INDEX, DatasetInfo
from .transforms import build_eval_transform

Transform = Callable[[tv_tensors.Image, tv_tensors.Mask], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Sample:
    id: str
    image: Path
    label: Path


def require_dir(path: Path, what: str) -> Path:
    """``path`` if it is a folder, else FileNotFoundError saying what was expected there."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: folder not found: {path}")
    return path


def read_id_list(list_path: Path, hint: str = "") -> list[str]:
    """Sample ids, one per line, of a split list such as ``ImageSets/Segmentation/train.txt``."""
    list_path = Path(list_path)
    if not list_path.is_file():
        present = sorted(p.name for p in list_path.parent.glob("*.txt")) if list_path.parent.is_dir() else []
        raise FileNotFoundError(
            f"split list not found: {list_path} (lists there: {present or 'none'}){hint}")
    from pna.paths import read_text

    ids = [line.split()[0] for line in read_text(list_path, "split list").splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"split list {list_path} is empty; expected one sample id per line")
    return ids


def check_pairs(samples: Sequence[Sample], dataset: str) -> list[Sample]:
    """Fail early, naming the file, when an image or its label is missing."""
    if not samples:
        raise ValueError(f"{dataset}: no samples found")
    for s in samples:
        if not s.image.is_file():
            raise FileNotFoundError(f"{dataset}: image of sample {s.id!r} not found: {s.image}")
        if not s.label.is_file():
            raise FileNotFoundError(
                f"{dataset}: image {s.image} has no label; expected the label file {s.label}")
    return list(samples)


def open_image(path: Path) -> Image.Image:
    """A fully decoded Pillow image, or ValueError naming the file when it cannot be read."""
    try:
        img = Image.open(path)
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(f"cannot read image file {path}: {err}") from err
    return img


def read_index_png(path: Path) -> np.ndarray:
    """Class ids stored as pixel values of a palette (P) or 8-bit grayscale (L) PNG."""
    img = open_image(path)
    if img.mode not in ("P", "L"):
        raise ValueError(
            f"label {path} has mode {img.mode}; expected a palette (P) or grayscale (L) PNG of class ids")
    return np.asarray(img, dtype=np.uint8)


def check_values(label: np.ndarray, valid: Sequence[int], path: Path) -> np.ndarray:
    """``label`` unchanged if every value is in ``valid``; else ValueError listing the strays."""
    if label.dtype == np.uint8:  # bincount is ~10x faster than unique on large label maps
        found = np.flatnonzero(np.bincount(label.ravel(), minlength=256))
    else:
        found = np.unique(label)
    bad = np.setdiff1d(found, np.asarray(valid))
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:20]) + (" ..." if bad.size > 20 else "")
        raise ValueError(
            f"label {path} holds values [{shown}] outside this dataset's ids "
            f"({_ranges(valid)}); values found: {found.min()}..{found.max()}")
    return label


def _ranges(values: Sequence[int]) -> str:
    values = sorted(set(int(v) for v in values))
    parts, start = [], values[0]
    for a, b in zip(values, values[1:] + [None]):
        if b != a + 1:
            parts.append(f"{start}" if start == a else f"{start}..{a}")
            start = b
    return ", ".join(parts)


def lookup(label: np.ndarray, table: np.ndarray, path: Path) -> np.ndarray:
    """Map raw ids through ``table`` (entries of -1 mark values that are not valid raw ids)."""
    check_values(label, np.flatnonzero(table >= 0), path)
    return table[label].astype(np.uint8)


class SegmentationDataset(Dataset):
    """Image/label pairs of one split; subclasses say where files are and how labels decode.

    Items are ``{"image": float 3xHxW (ImageNet-normalised), "label": long HxW (255 = ignore),
    "id": str}``. ``transform(image, mask)`` gets a uint8 ``tv_tensors.Image`` and a uint8
    ``tv_tensors.Mask`` and returns them transformed (see :mod:`pna.data.transforms`).

    Example:
        >>> import tempfile
        >>> from pna.data import build_dataset
        >>> ds = build_dataset("synthetic", tempfile.mkdtemp(), "train", num_train=2, num_val=1, size=64)
        >>> ds.num_classes, ds.eval_classes[:3], ds.ignore_index, ds[1]["id"]
        (7, [0, 1, 2], 255, 'train_000001')
    """

    def __init__(self, samples: Sequence[Sample], info: DatasetInfo, transform: Transform | None = None):
        self.samples = check_pairs(samples, info.name)
        self.info = info
        self.transform = transform
        self._default_transform = build_eval_transform()  # whole image, normalised

    # The label space, as attributes the rest of the project reads.
    @property
    def classes(self) -> list[str]:
        return list(self.info.classes)

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        return list(self.info.palette)

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    @property
    def eval_classes(self) -> list[int]:
        return list(self.info.eval_classes)

    @property
    def ignore_index(self) -> int:
        return self.info.ignore_index

    @property
    def valid_ids(self) -> list[int]:
        return list(range(self.num_classes)) + [IGNORE_INDEX]

    def read_label(self, path: Path) -> np.ndarray:
        """Train ids (uint8 HxW, 255 = ignore) of one label file; checks its values."""
        return check_values(read_index_png(path), self.valid_ids, path)

    def read_image(self, path: Path) -> np.ndarray:
        return np.asarray(open_image(path).convert("RGB"))

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The raw (RGB uint8 HxWx3, train-id uint8 HxW) pair of sample ``index``, size-checked."""
        s = self.samples[index]
        image, label = self.read_image(s.image), self.read_label(s.label)
        if image.shape[:2] != label.shape:
            raise ValueError(
                f"{self.info.name}: image {s.image} is {image.shape[1]}x{image.shape[0]} (WxH) but its "
                f"label {s.label} is {label.shape[1]}x{label.shape[0]}; expected the same size")
        return image, label

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict:
        image, label = self.load(index)
        image_t = tv_tensors.Image(torch.from_numpy(image.copy()).permute(2, 0, 1))
        label_t = tv_tensors.Mask(torch.from_numpy(label.copy()))
        transform = self.transform or self._default_transform
        image_t, label_t = transform(image_t, label_t)
        return {
            "image": image_t.as_subclass(torch.Tensor),
            "label": label_t.as_subclass(torch.Tensor).long(),
            "id": self.samples[index].id,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.info.name}, {len(self)} samples, {self.num_classes} classes)"
