"""Small datasets written in each dataset's official on-disk format, at its official image size.

For rehearsing the paper profile without the real data (``pna rehearse``) and for tests:
the files are exactly what the loaders read from the official downloads (VOC JPEG + palette PNG
with an SBD-style ``SegmentationClassAug`` and ``train_aug.txt``; Cityscapes 1024x2048 PNGs with raw
``labelIds``, 16-bit ``instanceIds`` and RGBA ``color``; COCO-Stuff 10k JPEGs + ``.mat`` with ``S``;
DeepGlobe 2448x2448 ``_sat.jpg`` + RGB ``_mask.png``; Trans10K JPEG + RGB ``_mask.png``). Labels are
a few random ellipses and boxes of random classes, so random crops see several classes.

Example::

    >>> import tempfile
    >>> from pna.data import build_dataset
    >>> root = write_fixture("deepglobe", tempfile.mkdtemp(), num_train=1, num_eval=1, size=(64, 64))
    >>> ds = build_dataset("deepglobe", root, "test")
    >>> tuple(ds[0]["label"].shape)
    (64, 64)
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import scipy.io
from PIL import Image

from .catalog import (CITYSCAPES_TRAIN, DEEPGLOBE_COLOURS, DEEPGLOBE_UNKNOWN, TRANS10K_COLOURS, voc_palette)

# Each dataset's official image size (H, W): VOC's typical 375x500, Cityscapes 1024x2048, a COCO
# image 480x640, DeepGlobe's 2448x2448 tiles, a Trans10K photo 768x1024.
OFFICIAL_SIZES = {"voc": (375, 500), "cityscapes": (1024, 2048), "cocostuff10k": (480, 640),
                  "deepglobe": (2448, 2448), "trans10k": (768, 1024)}


def random_label(rng: np.random.Generator, size: tuple[int, int], values: np.ndarray, shapes: int = 6) -> np.ndarray:
    """A label map of ``values[0]`` with ``shapes`` ellipses and boxes of random other values."""
    h, w = size
    label = np.full(size, values[0], dtype=values.dtype)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(shapes):
        value = values[rng.integers(0, len(values))]
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        ry, rx = rng.integers(h // 10, h // 3 + 1), rng.integers(w // 10, w // 3 + 1)
        if rng.random() < 0.5:
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
        else:
            inside = (abs(yy - cy) <= ry) & (abs(xx - cx) <= rx)
        label[inside] = value
    return label


def _image_for(rng: np.random.Generator, label: np.ndarray) -> Image.Image:
    """An RGB image whose colour depends on the label (plus noise), so the pair is learnable."""
    codes = np.unique(label, return_inverse=True)[1].reshape(label.shape)
    palette = rng.integers(0, 256, size=(codes.max() + 1, 3))
    noise = rng.integers(-20, 21, size=label.shape + (3,))
    return Image.fromarray(np.clip(palette[codes] + noise, 0, 255).astype(np.uint8))


def _voc(root: Path, ids: dict[str, list[str]], rng, size) -> Path:
    voc = root / "VOCdevkit" / "VOC2012"
    for folder in ("JPEGImages", "SegmentationClass", "SegmentationClassAug", "ImageSets/Segmentation"):
        (voc / folder).mkdir(parents=True, exist_ok=True)
    palette = [c for colour in voc_palette() for c in colour]
    for i in ids["train"] + ids["eval"]:
        label = random_label(rng, size, np.arange(21, dtype=np.uint8))
        label[::37, :] = 255  # thin void lines, as VOC's object borders
        _image_for(rng, label).save(voc / "JPEGImages" / f"{i}.jpg", quality=90)
        png = Image.fromarray(label, mode="P")
        png.putpalette(palette)
        png.save(voc / "SegmentationClass" / f"{i}.png")
        Image.fromarray(label, mode="L").save(voc / "SegmentationClassAug" / f"{i}.png")  # SBD-converted
    lists = voc / "ImageSets" / "Segmentation"
    (lists / "train.txt").write_text("\n".join(ids["train"]) + "\n")
    (lists / "train_aug.txt").write_text("\n".join(ids["train"]) + "\n")
    (lists / "val.txt").write_text("\n".join(ids["eval"]) + "\n")
    return voc


def _cityscapes(root: Path, ids: dict[str, list[str]], rng, size) -> Path:
    label_ids = np.array([0, 1, 4] + [label_id for _, label_id, _ in CITYSCAPES_TRAIN], dtype=np.uint8)
    for split, names in (("train", ids["train"]), ("val", ids["eval"])):
        for k, _ in enumerate(names):
            stem, city = f"aachen_{k:06d}_000019", "aachen"
            raw = random_label(rng, size, label_ids)
            images, gt = root / "leftImg8bit" / split / city, root / "gtFine" / split / city
            images.mkdir(parents=True, exist_ok=True)
            gt.mkdir(parents=True, exist_ok=True)
            _image_for(rng, raw).save(images / f"{stem}_leftImg8bit.png", compress_level=1)
            Image.fromarray(raw, mode="L").save(gt / f"{stem}_gtFine_labelIds.png")
            Image.fromarray((raw.astype(np.int32) * 1000).astype(np.uint16)).save(gt / f"{stem}_gtFine_instanceIds.png")
            Image.new("RGBA", (size[1], size[0]), (128, 64, 128, 255)).save(gt / f"{stem}_gtFine_color.png")
    return root


def _cocostuff(root: Path, ids: dict[str, list[str]], rng, size) -> Path:
    for folder in ("images", "annotations", "imageLists"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    values = np.array([0, 1, 13, 92, 150, 182, 12], dtype=np.uint16)  # unlabeled, things, stuff, an unused id
    for i in ids["train"] + ids["eval"]:
        s = random_label(rng, size, values)
        _image_for(rng, s).save(root / "images" / f"{i}.jpg", quality=90)
        scipy.io.savemat(root / "annotations" / f"{i}.mat", {"S": s, "names": np.array(["x"], dtype=object)})
    (root / "imageLists" / "train.txt").write_text("\n".join(ids["train"]) + "\n")
    (root / "imageLists" / "test.txt").write_text("\n".join(ids["eval"]) + "\n")
    return root


def _colour_masks(root: Path, ids, rng, size, colours, image_path, mask_path) -> None:
    table = np.array(colours, dtype=np.uint8)
    for i in ids:
        codes = random_label(rng, size, np.arange(len(colours), dtype=np.uint8))
        _image_for(rng, codes).save(image_path(i), quality=90)
        Image.fromarray(table[codes]).save(mask_path(i))


def _deepglobe(root: Path, ids: dict[str, list[str]], rng, size) -> Path:
    tiles = root / "land-train"
    tiles.mkdir(parents=True, exist_ok=True)
    _colour_masks(root, ids["train"] + ids["eval"], rng, size, DEEPGLOBE_COLOURS + (DEEPGLOBE_UNKNOWN,),
                  lambda i: tiles / f"{i}_sat.jpg", lambda i: tiles / f"{i}_mask.png")
    (root / "splits").mkdir(exist_ok=True)
    (root / "splits" / "train.txt").write_text("\n".join(ids["train"]) + "\n")
    for split in ("val", "test"):  # the authors' validation and test lists are the same
        (root / "splits" / f"{split}.txt").write_text("\n".join(ids["eval"]) + "\n")
    return root


def _trans10k(root: Path, ids: dict[str, list[str]], rng, size) -> Path:
    for split, names in (("train", ids["train"]), ("validation", ids["eval"])):
        (root / split / "images").mkdir(parents=True, exist_ok=True)
        (root / split / "masks").mkdir(parents=True, exist_ok=True)
        _colour_masks(root, names, rng, size, TRANS10K_COLOURS, lambda i, s=split: root / s / "images" / f"{i}.jpg",
                      lambda i, s=split: root / s / "masks" / f"{i}_mask.png")
    return root


WRITERS: dict[str, Callable] = {"voc": _voc, "cityscapes": _cityscapes, "cocostuff10k": _cocostuff,
                                "deepglobe": _deepglobe, "trans10k": _trans10k}


def write_fixture(dataset: str, root: str | Path, num_train: int = 2, num_eval: int = 1,
                  size: tuple[int, int] | None = None, seed: int = 0) -> Path:
    """Write ``dataset`` (a paper dataset key: voc, cityscapes, cocostuff10k, deepglobe, trans10k)
    under ``root`` in its official layout; returns the folder to give as ``data_root``."""
    if dataset not in WRITERS:
        raise ValueError(f"no fixture writer for {dataset!r}; expected one of {sorted(WRITERS)}")
    rng = np.random.default_rng(seed)
    ids = {"train": [f"{2007 + k}_{k:06d}" for k in range(num_train)],
           "eval": [f"{2008 + num_train + k}_{k:06d}" for k in range(num_eval)]}
    return WRITERS[dataset](Path(root), ids, rng, tuple(size or OFFICIAL_SIZES[dataset]))
