"""COCO-Stuff 10k ``annotations/<id>.mat`` (key ``S``) -> ``labels/<id>.png`` with train ids 0..170, 255.

The 182 COCO-Stuff ids minus the 11 thing ids COCO never used are renumbered in order (``unlabeled``
and the unused ids become 255). Release v1.1 is the default; ``--mat-version 1.0`` reads v1.0 files.

    python -m data_prep.cocostuff10k --root data/cocostuff-10k-v1.1
"""
from __future__ import annotations

from pathlib import Path

from pna.data.base import lookup, read_id_list, require_dir
from pna.data.catalog import COCOSTUFF_CLASSES
from pna.data.cocostuff import MAT_VERSIONS, cocostuff_to_train_id, read_cocostuff_mat

from .common import Report, check_same_size, parser, write_label_png

EXPECTED = {"train": 9000, "test": 1000}


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--root", required=True, type=Path, help="folder holding images/, annotations/, imageLists/")
    p.add_argument("--mat-version", default="1.1", choices=MAT_VERSIONS, help="release of the .mat files")
    args = p.parse_args(argv)
    require_dir(args.root / "annotations", "COCO-Stuff 10k annotations")
    table, report = cocostuff_to_train_id(args.mat_version), Report(171)
    for split in ("train", "test"):
        for i in read_id_list(args.root / "imageLists" / f"{split}.txt"):
            src = args.root / "annotations" / f"{i}.mat"
            if not src.is_file():
                raise FileNotFoundError(f"imageLists/{split}.txt lists {i} but {src} does not exist")
            try:
                label = lookup(read_cocostuff_mat(src), table, src)
            except ValueError as err:
                raise ValueError(f"{err} (reading as release v{args.mat_version}; see --mat-version)") from err
            check_same_size(args.root / "images" / f"{i}.jpg", label.shape, src)
            report.counts[f"{split}: {write_label_png(args.root / 'labels' / f'{i}.png', label, args.overwrite)}"] += 1
            report.add_label(label)
    report.print(f"COCO-Stuff 10k labels in {args.root / 'labels'}", COCOSTUFF_CLASSES)
    print(f"  official counts: {EXPECTED}")
    return 0


if __name__ == "__main__":
    from pna.errors import run_main

    raise SystemExit(run_main(main))  # errors as one line; --debug shows the traceback
