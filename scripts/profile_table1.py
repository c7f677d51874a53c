"""Params, GFLOPs and FPS of the four Table 1 rows (ResNet-50, VOC, 21 classes) beside the paper's.

    python scripts/profile_table1.py [--size 512 512] [--device cpu] [--fps-iters 3] [--overwrite]

Writes results/profile/table1.csv (refuses to replace an existing file without --overwrite). The
paper's FPS were measured on an RTX 3090; ours are on the device named in the ``device`` column.
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

from pna.profile import profile_model

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "profile" / "table1.csv"

# Paper Table 1: name, params (M), GFLOPs, FPS (RTX 3090)
PAPER = {
    "fcn_r50_os32": ("FCN-OS-32", 49.5, 28.7, 44.9),
    "fcn_r50_os8": ("FCN-OS-8", 49.5, 197.7, 28.1),
    "fcn_r50_os32_pna_nam": ("FCN-OS-32 + NAM", 56.4, 34.1, 34.5),
    "fcn_r50_os32_pna": ("FCN-OS-32 + NAM + SAM", 65.9, 41.6, 27.9),
}
COLUMNS = ["model", "paper_name", "size", "params_m", "paper_params_m", "params_diff_pct", "gflops",
           "gflops_without_na", "paper_gflops", "gflops_diff_pct", "fps", "paper_fps_3090", "device", "load_avg_1min",
           "skipped_ops"]


def pct(ours: float, paper: float) -> float:
    return round(100 * (ours - paper) / paper, 2)


def profile_row(name: str, size: tuple[int, int], device: str, fps_iters: int, warmup: int) -> dict:
    paper_name, paper_params, paper_gflops, paper_fps = PAPER[name]
    row = profile_model(name, size, 21, device, fps_iters=fps_iters, warmup=warmup)
    return {
        "model": name, "paper_name": paper_name, "size": f"{size[0]}x{size[1]}",
        "params_m": round(row["params_m"], 3), "paper_params_m": paper_params,
        "params_diff_pct": pct(row["params_m"], paper_params),
        "gflops": round(row["gflops"], 3), "gflops_without_na": round(row["gflops"] - row["na_gflops"], 3),
        "paper_gflops": paper_gflops, "gflops_diff_pct": pct(row["gflops"], paper_gflops),
        "fps": None if row["fps"] is None else round(row["fps"], 3), "paper_fps_3090": paper_fps,
        "device": row["device"], "load_avg_1min": round(row["load_avg_1min"], 2), "skipped_ops": " ".join(f"{op}:{n}" for op, n in row["skipped_ops"].items()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--fps-iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing CSV")
    args = parser.parse_args()
    if args.out.exists() and not args.overwrite:
        raise SystemExit(f"{args.out} exists; pass --overwrite to replace it")
    rows = []
    for name in PAPER:
        rows.append(profile_row(name, tuple(args.size), args.device, args.fps_iters, args.warmup))
        r = rows[-1]
        print(f"{name:24s} params {r['params_m']:7.2f} M (paper {r['paper_params_m']})  "
              f"GFLOPs {r['gflops']:7.2f} (paper {r['paper_gflops']}, without NA {r['gflops_without_na']})  "
              f"FPS {r['fps']} on {r['device']} (paper {r['paper_fps_3090']} on a 3090)", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
