"""Trans10K ``<split>/masks/<id>_mask.png`` (RGB) -> ``<split>/labels/<id>.png`` (0 background, 1 things, 2 stuff).

Red (255,0,0) is things, white stuff, black background; channels are thresholded at 128 and any
other colour is an error naming the file.

    python -m data_prep.trans10k --root data/Trans10K
"""
from __future__ import annotations

from pathlib import Path

from pna.data.base import require_dir
from pna.data.catalog import TRANS10K_CLASSES
from pna.data.deepglobe import decode_colour_mask
from pna.data.trans10k import TRANS10K_COLOUR_TO_ID, converted_label_path

from .common import Report, check_same_size, parser, write_label_png

EXPECTED = {"train": 5000, "validation": 1000, "test": 4428}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--root", required=True, type=Path, help="folder holding train/, validation/, test/")
    args = p.parse_args(argv)
    root = require_dir(args.root, "Trans10K root")
    report = Report(3)
    for split in EXPECTED:
        if not (root / split).is_dir():
            report.counts[f"{split}: folder missing"] += 1
            continue
        for image in sorted((root / split).glob("**/images/*.jpg")):
            src = image.parent.parent / "masks" / f"{image.stem}_mask.png"
            if not src.is_file():
                raise FileNotFoundError(f"image {image} has no mask; expected {src}")
            label = decode_colour_mask(src, TRANS10K_COLOUR_TO_ID)
            check_same_size(image, label.shape, src)
            report.counts[f"{split}: {write_label_png(converted_label_path(image), label, args.overwrite)}"] += 1
            report.add_label(label)
    report.print(f"Trans10K labels under {root}", TRANS10K_CLASSES)
    print(f"  official counts: {EXPECTED}")
    return 0


if __name__ == "__main__":
    from pna.errors import run_main

    raise SystemExit(run_main(main))  # errors as one line; --debug shows the traceback
