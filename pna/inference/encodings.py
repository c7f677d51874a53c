"""Label maps as files: the dataset-palette PNG every prediction gets, and the test servers' formats.

Every label map is written as a palette PNG (mode P) whose pixel values are the train ids and whose
palette is the dataset's colours: a viewer shows the colours, a reader gets the ids back.

``--format`` writes what a benchmark or the dataset's own tools read (``docs/prediction_formats.md``
gives each format's source and what is ambiguous). Each is derived from the decoder in
:mod:`pna.data`, so a file written here and read by that decoder gives the same train ids (tested):

* ``cityscapes``: ``labelIds`` (mode L, raw ids 0..33; train id -> id by cityscapesScripts'
  ``labels.py``, the table in :data:`pna.data.catalog.CITYSCAPES_TRAIN`), the file named after the
  image so that it holds ``<city>_<seq>_<frame>`` as the server's matching asks;
* ``voc``: palette PNG of class ids with the 256-colour VOC map (the ground truth's form);
* ``cocostuff``: mode L of COCO-Stuff ids 1..182 (the values of COCO-Stuff 10k's ``S``, 0 =
  unlabeled never written), read back through :func:`pna.data.cocostuff.cocostuff_to_train_id`;
* ``deepglobe``: RGB colour mask in the challenge's colours (``unknown`` black);
* ``trans10k``: RGB mask, background black, things red, stuff white.

Example::

    >>> labels = np.array([[0, 1], [18, 13]], dtype=np.uint8)
    >>> np.asarray(encode("cityscapes", labels)).tolist()
    [[7, 8], [33, 26]]
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from pna.data.catalog import (CITYSCAPES_TRAIN, COCOSTUFF_IDS, DEEPGLOBE_COLOURS, DEEPGLOBE_UNKNOWN,
                              TRANS10K_COLOURS, DatasetInfo, voc_palette)

PALETTE_ENTRIES = 256


def palette_png(labels: np.ndarray, palette: Sequence[Sequence[int]]) -> Image.Image:
    """A mode-P PNG image of the ids ``labels`` with ``palette`` (padded to 256 entries with black)."""
    if labels.max(initial=0) >= PALETTE_ENTRIES:
        raise ValueError(f"label value {int(labels.max())} does not fit a palette PNG (at most 255)")
    flat = [value for colour in list(palette)[:PALETTE_ENTRIES] for value in colour]
    image = Image.fromarray(labels.astype(np.uint8))  # L; the palette makes it P
    image.putpalette(flat + [0] * (3 * PALETTE_ENTRIES - len(flat)))
    return image


def _table(values: Sequence[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.uint8)


def _cityscapes(labels: np.ndarray) -> Image.Image:
    return Image.fromarray(_table([label_id for _, label_id, _ in CITYSCAPES_TRAIN])[labels])


def _voc(labels: np.ndarray) -> Image.Image:
    return palette_png(labels, voc_palette(PALETTE_ENTRIES))


def _cocostuff(labels: np.ndarray) -> Image.Image:
    ids = [k + 1 for k, name in enumerate(COCOSTUFF_IDS) if name is not None]  # train id t -> ids[t]
    return Image.fromarray(_table(ids)[labels])


def _colours(colours: Sequence[Sequence[int]]) -> Callable[[np.ndarray], Image.Image]:
    table = np.asarray(colours, dtype=np.uint8)
    return lambda labels: Image.fromarray(table[labels])


@dataclass(frozen=True)
class Format:
    """A test server's or dataset's file format for the final prediction of an image."""

    name: str
    datasets: tuple[str, ...]      # the label spaces it encodes
    what: str
    encode: Callable[[np.ndarray], Image.Image]
    file_name: re.Pattern | None = None  # names the consumer matches predictions by
    name_hint: str = ""


FORMATS = {
    "cityscapes": Format("cityscapes", ("cityscapes",), "Cityscapes labelIds PNG (benchmark server)", _cityscapes,
                         re.compile(r"[a-z_]+_\d{6}_\d{6}"), "<city>_<seq>_<frame> (the server matches by it)"),
    "voc": Format("voc", ("voc", "voc_aug"), "PASCAL VOC palette PNG of class ids (evaluation server)", _voc),
    "cocostuff": Format("cocostuff", ("cocostuff10k",), "COCO-Stuff ids 1..182, mode L PNG", _cocostuff),
    "deepglobe": Format("deepglobe", ("deepglobe",), "DeepGlobe RGB colour mask",
                        _colours(DEEPGLOBE_COLOURS + (DEEPGLOBE_UNKNOWN,))),
    "trans10k": Format("trans10k", ("trans10k",), "Trans10K RGB mask (black / red / white)", _colours(TRANS10K_COLOURS)),
}


def check_formats(names: Sequence[str], dataset: DatasetInfo) -> list[Format]:
    """The formats ``names``, each checked to encode ``dataset``'s label space (a one-line error)."""
    chosen = []
    for name in names:
        if name not in FORMATS:
            from pna.errors import unknown_name_error
            raise unknown_name_error("format", name, FORMATS, "pna.inference.encodings.FORMATS")
        fmt = FORMATS[name]
        if dataset.name not in fmt.datasets:
            raise ValueError(f"format {name!r} encodes {', '.join(fmt.datasets)} labels, but this model predicts "
                             f"{dataset.name} classes; formats for it: {formats_for(dataset) or 'none'}")
        chosen.append(fmt)
    return chosen


def formats_for(dataset: DatasetInfo) -> list[str]:
    return [name for name, fmt in FORMATS.items() if dataset.name in fmt.datasets]


def encode(name: str, labels: np.ndarray) -> Image.Image:
    """The train ids ``labels`` (HxW) in format ``name`` (a key of :data:`FORMATS`)."""
    return FORMATS[name].encode(np.asarray(labels))
