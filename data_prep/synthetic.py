"""Generate the built-in synthetic dataset now (it is otherwise generated on first use).

    python -m data_prep.synthetic                      # default (the smoke set): 256 train / 32 val, 256x256, seed 0
    python -m data_prep.synthetic --num-train 64 --size 128 --cache-dir /tmp/pna
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pna.data.catalog import SYNTHETIC_CLASSES
from pna.data.synthetic import SyntheticConfig, default_cache_dir, ensure_synthetic

from .common import Report


def main(argv: list[str] | None = None) -> int:
    d = SyntheticConfig()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cache-dir", type=Path, default=None, help=f"default: $PNA_CACHE or {default_cache_dir()}")
    p.add_argument("--num-train", type=int, default=d.num_train)
    p.add_argument("--num-val", type=int, default=d.num_val)
    p.add_argument("--size", type=int, default=d.size)
    p.add_argument("--seed", type=int, default=d.seed)
    args = p.parse_args(argv)
    start = time.perf_counter()
    folder = ensure_synthetic(args.cache_dir, args.num_train, args.num_val, args.size, args.seed)
    seconds = time.perf_counter() - start
    report = Report(len(SYNTHETIC_CLASSES))
    for png in sorted((folder / "SegmentationClass").glob("*.png")):
        report.add_label(np.asarray(Image.open(png)))
        report.counts["labels"] += 1
    report.print(f"synthetic set in {folder} (ready in {seconds:.1f} s)", SYNTHETIC_CLASSES)
    return 0


if __name__ == "__main__":
    from pna.errors import run_main

    raise SystemExit(run_main(main))  # errors as one line; --debug shows the traceback
