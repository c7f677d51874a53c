"""DeepGlobe land cover ``land-train/<id>_mask.png`` (RGB) -> ``labels/<id>.png`` and a fixed 454/207/142 split.

Colours are thresholded at 128 into urban 0, agriculture 1, rangeland 2, forest 3, water 4,
barren 5; unknown (black) becomes 255 (ignored). The 803 tiles that have a mask are ordered by
SHA-256 of ``"deepglobe:<id>"`` (a fixed order that needs no random generator) and cut into
train / val / test of ``--sizes`` (454 207 142). The authors' own id lists are not public here;
this split has the same sizes, not the same tiles.

    python -m data_prep.deepglobe --root data/deepglobe
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from pna.data.base import require_dir
from pna.data.catalog import DEEPGLOBE_CLASSES
from pna.data.deepglobe import DEEPGLOBE_COLOUR_TO_ID, decode_colour_mask

from .common import Report, check_same_size, parser, write_label_png, write_list

SPLITS = ("train", "val", "test")


def split_order(ids: list[str]) -> list[str]:
    """The fixed order the split is cut from."""
    return sorted(ids, key=lambda i: hashlib.sha256(f"deepglobe:{i}".encode()).hexdigest())


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--root", required=True, type=Path, help="folder holding land-train/")
    p.add_argument("--sizes", nargs=3, type=int, default=[454, 207, 142], metavar=("TRAIN", "VAL", "TEST"),
                   help="split sizes; must add up to the number of tiles with a mask (default: 454 207 142)")
    args = p.parse_args(argv)
    tiles = require_dir(args.root / "land-train", "DeepGlobe land-train")
    ids = [m.name[: -len("_mask.png")] for m in sorted(tiles.glob("*_mask.png"))]
    for i in ids:
        if not (tiles / f"{i}_sat.jpg").is_file():
            raise FileNotFoundError(f"mask {tiles / f'{i}_mask.png'} has no image {tiles / f'{i}_sat.jpg'}")
    if sum(args.sizes) != len(ids):
        raise ValueError(f"--sizes {args.sizes} add up to {sum(args.sizes)} but {tiles} holds {len(ids)} "
                         "tiles with a mask (the official land-train set has 803)")
    report = Report(6)
    for i in ids:
        src = tiles / f"{i}_mask.png"
        label = decode_colour_mask(src, DEEPGLOBE_COLOUR_TO_ID)
        check_same_size(tiles / f"{i}_sat.jpg", label.shape, src)
        report.counts[f"labels {write_label_png(args.root / 'labels' / f'{i}.png', label, args.overwrite)}"] += 1
        report.add_label(label)
    order, start = split_order(ids), 0
    for split, size in zip(SPLITS, args.sizes):
        chunk = sorted(order[start:start + size])
        start += size
        report.counts[f"splits/{split}.txt ({size} ids) {write_list(args.root / 'splits' / f'{split}.txt', chunk, args.overwrite)}"] += 1
    report.print(f"DeepGlobe labels in {args.root / 'labels'}", DEEPGLOBE_CLASSES)
    return 0


if __name__ == "__main__":
    from pna.errors import run_main

    raise SystemExit(run_main(main))  # errors as one line; --debug shows the traceback
