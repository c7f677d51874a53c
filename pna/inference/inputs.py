"""A user's images: which files the inputs name, how each is read into RGB, and the reading dataset.

Inputs are image files, folders (searched recursively for the suffixes in ``IMAGE_SUFFIXES``, any
case) and glob patterns (``**`` recurses). Each image gets an output name: its path relative to the
folder it was found in, or its stem, without the suffix; two images that would get the same name are
an error before anything runs.

Reading (Pillow): the EXIF orientation is applied (``ImageOps.exif_transpose``: the pixels as a
viewer shows them), then the image becomes 8-bit RGB. Each conversion that is not a plain RGB read
comes with a note, which the batch runner says once per kind:

* grayscale (L, LA, 1): the channel repeated; palette (P, PA): the palette's colours; an alpha
  channel (RGBA, LA, PA) is dropped, not composited; CMYK, YCbCr, LAB, HSV: Pillow's conversion;
* 16-bit (I;16 grayscale, 16-bit colour PNG/TIFF): the high byte is kept (value // 256), which is
  what Pillow itself does to 16-bit colour PNGs; no contrast stretch, so an image that uses a small
  part of the 16-bit range comes out dark;
* 32-bit float (F) or integer (I) images are refused: they have no one 8-bit reading.

Example::

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> Image.new("L", (4, 3), 128).save(folder / "gray.png")
    >>> [image.name for image in discover([str(folder)])]
    ['gray']
    >>> rgb, note = read_rgb(folder / "gray.png")
    >>> rgb.shape, rgb[0, 0].tolist(), note
    ((3, 4, 3), [128, 128, 128], 'grayscale (L): the channel repeated to RGB')
"""
from __future__ import annotations

import glob
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".bmp")
GLOB_CHARACTERS = "*?["

# mode -> (how it becomes RGB, the note said once); None: a plain RGB read
CONVERSIONS = {
    "RGB": None,
    "L": "grayscale (L): the channel repeated to RGB",
    "1": "bilevel (1): black and white as 0 and 255, repeated to RGB",
    "LA": "grayscale with alpha (LA): alpha dropped, the channel repeated to RGB",
    "P": "palette (P): the palette's colours (any transparency dropped)",
    "PA": "palette with alpha (PA): the palette's colours, alpha dropped",
    "RGBA": "RGBA: the alpha channel dropped (colours kept as stored, not composited)",
    "RGBa": "RGBa: the alpha channel dropped",
    "RGBX": "RGBX: the padding channel dropped",
    "CMYK": "CMYK: converted to RGB by Pillow",
    "YCbCr": "YCbCr: converted to RGB by Pillow",
    "LAB": "LAB: converted to RGB by Pillow",
    "HSV": "HSV: converted to RGB by Pillow",
}
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
SIXTEEN_BIT_NOTE = "16-bit grayscale: the high byte kept (value // 256), repeated to RGB; no contrast stretch"
SIXTEEN_BIT_COLOUR_NOTE = "16-bit colour: the high byte of each channel kept (value // 256, Pillow's reading)"


@dataclass(frozen=True)
class InputImage:
    """One image to predict: its file and the name its outputs get (``sub/dir/stem``, no suffix)."""

    path: Path
    name: str


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _expand(item: str) -> list[InputImage]:
    path = Path(item).expanduser()
    if path.is_file():  # named explicitly: read whatever its suffix, a failure is reported per image
        return [InputImage(path, path.stem)]
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if _is_image(p))
        if not found:
            raise FileNotFoundError(f"input folder {path} holds no images (looked for {', '.join(IMAGE_SUFFIXES)})")
        return [InputImage(p, p.relative_to(path).with_suffix("").as_posix()) for p in found]
    if any(c in item for c in GLOB_CHARACTERS):
        found = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if _is_image(Path(p)))
        if not found:
            raise FileNotFoundError(f"input pattern {item!r} matches no images (suffixes {', '.join(IMAGE_SUFFIXES)})")
        return [InputImage(p, p.stem) for p in found]
    raise FileNotFoundError(f"input {item!r}: no such file or folder (and no glob pattern)")


def discover(inputs: Sequence[str]) -> list[InputImage]:
    """The images named by ``inputs`` (files, folders, globs), in order, each file once; a one-line
    error for an input that names nothing and for two images whose outputs would share a name."""
    if not inputs:
        raise ValueError("no input given: pass image files, folders or glob patterns")
    images, seen, names = [], set(), {}
    for item in inputs:
        for image in _expand(str(item)):
            key = image.path.resolve()
            if key in seen:
                continue
            if image.name in names:
                raise ValueError(f"{names[image.name]} and {image.path} would both be written as {image.name!r}: "
                                 "rename one, or pass their common folder as the input (names keep subfolders)")
            seen.add(key)
            names[image.name] = image.path
            images.append(image)
    return images


def _sixteen_bit_colour(img: Image.Image) -> bool:
    return any(";16" in str(tile.args[0] if isinstance(tile.args, tuple) else tile.args) for tile in img.tile or [])


def to_rgb(img: Image.Image) -> tuple[np.ndarray, str | None]:
    """An opened (orientation applied) image as RGB uint8 HxWx3 and the note of its conversion."""
    mode = img.mode
    if mode in SIXTEEN_BIT:
        values = np.asarray(img, dtype=np.uint16)
        return np.repeat((values >> 8).astype(np.uint8)[..., None], 3, axis=2), SIXTEEN_BIT_NOTE
    if mode not in CONVERSIONS:
        raise ValueError(f"image mode {mode} ({'32-bit float' if mode == 'F' else 'not 8-bit'}) has no one 8-bit RGB "
                         "reading; convert it to 8-bit RGB first")
    rgb = img if mode == "RGB" else img.convert("RGB")
    return np.array(rgb, dtype=np.uint8), CONVERSIONS[mode]  # a writable copy (torch.from_numpy needs one)


def read_rgb(path: str | Path) -> tuple[np.ndarray, str | None]:
    """The image at ``path`` as a viewer shows it (EXIF orientation applied), RGB uint8 HxWx3, and
    the note of the conversion it needed (None: a plain 8-bit RGB image). ValueError naming the
    file and the cause when it cannot be read (not an image, truncated, an unsupported mode)."""
    path = Path(path)
    try:
        with Image.open(path) as img:
            colour16 = img.mode == "RGB" and _sixteen_bit_colour(img)
            img.load()  # a truncated file fails here, not later
            upright = ImageOps.exif_transpose(img)
            rgb, note = to_rgb(upright)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"{path}: cannot read image: {cause}") from err
    return rgb, SIXTEEN_BIT_COLOUR_NOTE if colour16 else note


class ImageFiles(Dataset):
    """The images of :func:`discover` read for a model: item ``i`` is a dict with ``index``,
    ``name``, ``path``, ``image`` (normalised float 3xhxw at the protocol's test size, or None),
    ``size`` (the image's own H, W), ``note`` (its conversion), ``error`` (one line, or None) and
    ``read_s`` (seconds spent reading and preparing it), and with ``keep_rgb`` the image as read
    (``rgb``, for overlays and figures). A file that cannot be read gives an item with ``error`` set
    instead of raising, so that a batch goes on past it."""

    def __init__(self, images: Sequence[InputImage], prepare, keep_rgb: bool = False):
        self.images, self.prepare, self.keep_rgb = list(images), prepare, keep_rgb

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        image = self.images[index]
        start = time.perf_counter()
        item = {"index": index, "name": image.name, "path": str(image.path), "image": None, "size": None,
                "note": None, "error": None, "rgb": None}
        try:
            rgb, item["note"] = read_rgb(image.path)
            item["size"] = rgb.shape[:2]
            item["image"] = self.prepare(rgb)
            item["rgb"] = rgb if self.keep_rgb else None
        except ValueError as err:
            item["error"] = str(err)
        except RuntimeError as err:  # e.g. a resize of an image too large for memory
            item["error"] = f"{image.path}: cannot prepare image: {err}"
        item["read_s"] = time.perf_counter() - start
        return item


def as_list(items: list[dict]) -> list[dict]:
    """The loader's collate: items stay a list (images differ in size; the runner groups them)."""
    return items


def rgb_tensor(rgb: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> 3xHxW uint8 tensor (what the datasets hand their transforms)."""
    return torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)
