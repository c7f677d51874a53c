"""DeepGlobe land cover ``land-train/<id>_mask.png`` (RGB) -> ``labels/<id>.png`` and the 454/207/142 split.

Colours are thresholded at 128 into urban 0, agriculture 1, rangeland 2, forest 3, water 4,
barren 5; unknown (black) becomes 255 (ignored, or class 6 where a row trains it).

The split (``--split``):

- ``magnet`` (default): MagNet's lists (Huynh et al. 2021), whose 454 / 207 / 142 tiles the paper
  follows: the ids of ``VinAIResearch/MagNet@7f5b876:data/list/deepglobe/{train,val,test}.txt``,
  shipped as ``data_prep/deepglobe_magnet_split.txt`` (source, commit and licence in its header).
  ``--split-file DIR`` reads the three list files from a folder instead, in MagNet's own format
  (``land-train/<id>_sat.jpg<TAB>land-train/<id>_mask.png`` per line, the format the authors'
  loader parses);
- ``sha256``: a fallback that needs no list: the tiles ordered by SHA-256 of ``"deepglobe:<id>"``
  and cut into ``--sizes`` (454 207 142). Same sizes as MagNet's, other tiles: not comparable with
  the paper's Table 5 tile for tile.

    python -m data_prep.deepglobe --root data/deepglobe
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from pathlib import Path

from pna.data.base import require_dir
from pna.data.catalog import DEEPGLOBE_CLASSES
from pna.data.deepglobe import DEEPGLOBE_COLOUR_TO_ID, decode_colour_mask

from .common import Report, check_same_size, parser, write_label_png, write_list

SPLITS = ("train", "val", "test")
MAGNET_SPLIT = Path(__file__).with_name("deepglobe_magnet_split.txt")
MAGNET_SIZES = (454, 207, 142)  # the paper's sizes; MagNet's list lengths
# one line of MagNet's list files: image, tab, mask, both under land-train/
_MAGNET_LINE = re.compile(r"land-train/(\w+)_sat\.jpg\tland-train/(\w+)_mask\.png")


def split_order(ids: list[str]) -> list[str]:
    """The fixed order the ``sha256`` split is cut from."""
    return sorted(ids, key=lambda i: hashlib.sha256(f"deepglobe:{i}".encode()).hexdigest())


def sha256_split(ids: list[str], sizes: list[int], tiles: Path) -> dict[str, list[str]]:
    if sum(sizes) != len(ids):
        raise ValueError(f"--sizes {sizes} add up to {sum(sizes)} but {tiles} holds {len(ids)} "
                         "tiles with a mask (the official land-train set has 803)")
    order, start, out = split_order(ids), 0, {}
    for split, size in zip(SPLITS, sizes):
        out[split] = sorted(order[start:start + size])
        start += size
    return out


def shipped_magnet_split(path: Path = MAGNET_SPLIT) -> dict[str, list[str]]:
    """MagNet's split as shipped here: ``<split> <id>`` lines, ``#`` comments."""
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip() and not line.startswith("#"):
            split, tile = line.split()
            if split not in out:
                raise ValueError(f"{path}:{n}: split {split!r}; expected one of {SPLITS}")
            out[split].append(tile)
    return out


def read_magnet_lists(folder: Path) -> dict[str, list[str]]:
    """The ids of MagNet-format ``train.txt``, ``val.txt``, ``test.txt`` in ``folder``."""
    folder = require_dir(folder, "--split-file (a folder with MagNet's train.txt, val.txt, test.txt)")
    out = {}
    for split in SPLITS:
        path = folder / f"{split}.txt"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found; --split-file needs train.txt, val.txt and test.txt")
        ids = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            match = _MAGNET_LINE.fullmatch(line.strip())
            if not match or match[1] != match[2]:
                raise ValueError(f"{path}:{n}: {line.strip()!r}; expected 'land-train/<id>_sat.jpg<TAB>"
                                 "land-train/<id>_mask.png' (MagNet's list format)")
            ids.append(match[1])
        out[split] = ids
    return out


def check_split(split: dict[str, list[str]], ids: list[str], tiles: Path, source: str) -> None:
    """Every listed tile exists and is listed once; decided before any label is converted."""
    listed = [i for s in SPLITS for i in split[s]]
    repeated = sorted(i for i, n in Counter(listed).items() if n > 1)
    if repeated:
        raise ValueError(f"{source}: tiles listed more than once: {repeated[:5]}")
    missing = sorted(set(listed) - set(ids))
    if missing:
        raise FileNotFoundError(f"{source} lists {len(missing)} tiles that {tiles} lacks (e.g. "
                                f"{tiles / (missing[0] + '_mask.png')}); expected the official land-train "
                                "folder (803 tiles), or pass --split sha256 for a split of the tiles present")


def choose_split(args, ids: list[str], tiles: Path) -> tuple[dict[str, list[str]], str]:
    if args.split == "sha256":
        return sha256_split(ids, args.sizes, tiles), "sha256 order"
    if args.split_file is not None:
        split, source = read_magnet_lists(args.split_file), f"MagNet lists in {args.split_file}"
    else:
        split, source = shipped_magnet_split(), f"MagNet's split ({MAGNET_SPLIT.name})"
    check_split(split, ids, tiles, source)
    return split, source


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--root", required=True, type=Path, help="folder holding land-train/")
    p.add_argument("--split", choices=("magnet", "sha256"), default="magnet",
                   help="magnet: MagNet's 454/207/142 lists, as the paper (default); sha256: the fallback split")
    p.add_argument("--split-file", type=Path, default=None, metavar="DIR",
                   help="with --split magnet: a folder holding MagNet's train.txt, val.txt, test.txt "
                        "(default: the copy of their ids shipped in data_prep/)")
    p.add_argument("--sizes", nargs=3, type=int, default=list(MAGNET_SIZES), metavar=("TRAIN", "VAL", "TEST"),
                   help="with --split sha256: split sizes adding up to the tiles with a mask (default: 454 207 142)")
    args = p.parse_args(argv)
    if args.split_file is not None and args.split != "magnet":
        raise ValueError("--split-file holds MagNet's lists: use it with --split magnet")
    tiles = require_dir(args.root / "land-train", "DeepGlobe land-train")
    ids = [m.name[: -len("_mask.png")] for m in sorted(tiles.glob("*_mask.png"))]
    for i in ids:
        if not (tiles / f"{i}_sat.jpg").is_file():
            raise FileNotFoundError(f"mask {tiles / f'{i}_mask.png'} has no image {tiles / f'{i}_sat.jpg'}")
    split, source = choose_split(args, ids, tiles)
    report = Report(6)
    for i in ids:
        src = tiles / f"{i}_mask.png"
        label = decode_colour_mask(src, DEEPGLOBE_COLOUR_TO_ID)
        check_same_size(tiles / f"{i}_sat.jpg", label.shape, src)
        report.counts[f"labels {write_label_png(args.root / 'labels' / f'{i}.png', label, args.overwrite)}"] += 1
        report.add_label(label)
    for name in SPLITS:
        written = write_list(args.root / "splits" / f"{name}.txt", split[name], args.overwrite)
        report.counts[f"splits/{name}.txt ({len(split[name])} ids, {source}) {written}"] += 1
    report.print(f"DeepGlobe labels in {args.root / 'labels'}", DEEPGLOBE_CLASSES)
    return 0


if __name__ == "__main__":
    from pna.errors import run_main

    raise SystemExit(run_main(main))  # errors as one line; --debug shows the traceback
