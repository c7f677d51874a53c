"""Cityscapes gtFine ``*_labelIds.png`` (raw ids 0..33) -> ``*_labelTrainIds.png`` (19 train ids, 255).

    python -m data_prep.cityscapes --root data/cityscapes
"""
from __future__ import annotations

from pathlib import Path

from pna.data.base import lookup, read_index_png, require_dir
from pna.data.catalog import CITYSCAPES_TRAIN
from pna.data.cityscapes import label_id_to_train_id

from .common import Report, check_same_size, parser, write_label_png

EXPECTED = {"train": 2975, "val": 500, "test": 1525}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--root", required=True, type=Path, help="folder holding leftImg8bit/ and gtFine/")
    args = p.parse_args(argv)
    gt = require_dir(args.root / "gtFine", "Cityscapes gtFine")
    table, names = label_id_to_train_id(), tuple(n for n, _, _ in CITYSCAPES_TRAIN)
    sources = sorted(gt.glob("*/*/*_gtFine_labelIds.png"))
    if not sources:
        raise FileNotFoundError(f"no */*/*_gtFine_labelIds.png under {gt}")
    report = Report(19)
    for src in sources:
        split = src.parents[1].name
        label = lookup(read_index_png(src), table, src)
        image = args.root / "leftImg8bit" / split / src.parent.name / src.name.replace("_gtFine_labelIds", "_leftImg8bit")
        if image.is_file():
            check_same_size(image, label.shape, src)
        else:
            report.counts[f"{split}: labels without an image"] += 1
        out = src.with_name(src.name.replace("_labelIds.png", "_labelTrainIds.png"))
        report.counts[f"{split}: {write_label_png(out, label, args.overwrite)}"] += 1
        report.add_label(label)
    report.print(f"Cityscapes labelTrainIds under {gt}", names)
    print(f"  official counts: {EXPECTED}")
    return 0


if __name__ == "__main__":
    from pna.errors import run_main

    raise SystemExit(run_main(main))  # errors as one line; --debug shows the traceback
