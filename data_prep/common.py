"""What every conversion script shares: idempotent writes that never clobber different data, and a summary."""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image


class Report:
    """Counts of what a run wrote, left unchanged, and which class ids it saw."""

    def __init__(self, num_classes: int):
        self.counts: Counter[str] = Counter()
        self.pixels = np.zeros(256, dtype=np.int64)
        self.num_classes = num_classes

    def add_label(self, label: np.ndarray) -> None:
        self.pixels += np.bincount(label.ravel(), minlength=256)

    def print(self, title: str, class_names: tuple[str, ...] | list[str]) -> None:
        print(f"== {title}")
        for key, value in sorted(self.counts.items()):
            print(f"  {key}: {value}")
        seen = [i for i in range(self.num_classes) if self.pixels[i]]
        total = max(1, int(self.pixels.sum()))
        print(f"  classes found: {len(seen)} of {self.num_classes}; ignored (255) pixels: "
              f"{100 * self.pixels[255] / total:.2f}%")
        for i in seen:
            print(f"    {i:3d} {class_names[i]:<20s} {100 * self.pixels[i] / total:6.2f}% of pixels")


def write_label_png(path: Path, label: np.ndarray, overwrite: bool = False) -> str:
    """Write ``label`` (uint8 HxW) as a grayscale PNG; "unchanged" when the same labels are there already.

    An existing file holding different labels is left alone (FileExistsError) unless ``overwrite``.
    """
    if path.is_file():
        existing = np.asarray(Image.open(path))
        if existing.shape == label.shape and np.array_equal(existing, label):
            return "unchanged"
        if not overwrite:
            raise FileExistsError(f"{path} exists with different labels; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(label.astype(np.uint8)).save(path)
    return "written"


def write_list(path: Path, ids: list[str], overwrite: bool = False) -> str:
    """Write a split list (one id per line), with the same rule as :func:`write_label_png`."""
    text = "\n".join(ids) + "\n"
    if path.is_file():
        if path.read_text() == text:
            return "unchanged"
        if not overwrite:
            raise FileExistsError(f"{path} exists with a different list; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return "written"


def check_same_size(image: Path, label_shape: tuple[int, ...], label: Path) -> None:
    """Raise when the image's size (read from its header) differs from the label's."""
    width, height = Image.open(image).size
    if (height, width) != tuple(label_shape[:2]):
        raise ValueError(f"image {image} is {width}x{height} (WxH) but label {label} is "
                         f"{label_shape[1]}x{label_shape[0]}; expected the same size")


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing outputs that differ (by default they are an error)")
    return p
