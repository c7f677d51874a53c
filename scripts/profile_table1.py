"""Params, GFLOPs and FPS of the Table 1 rows (ResNet-50, VOC, 21 classes) beside the paper's.

    python scripts/profile_table1.py [--size 512 512] [--device cpu] [--fps-iters 3] [--overwrite]

Writes results/profile/table1.csv (refuses to replace an existing file without --overwrite). The
paper's FPS were measured on an RTX 3090; ours are on the device named in the ``device`` column.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from pna.profile import profile_table

OUT = Path(__file__).resolve().parents[1] / "results" / "profile" / "table1.csv"
ROWS = ["fcn_r50_os32", "fcn_r50_os8", "fcn_r50_os32_pna_nam", "fcn_r50_os32_pna"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--fps-iters", type=int, default=3)
    parser.add_argument("--rows", nargs="+", default=ROWS)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing CSV")
    args = parser.parse_args()
    if args.out.exists() and not args.overwrite:
        raise SystemExit(f"{args.out} exists; pass --overwrite to replace it")
    frame = profile_table("table1", args.rows, tuple(args.size), args.device, args.fps_iters)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
