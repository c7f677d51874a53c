"""Params and GFLOPs of every registered model at 512x512, 21 classes (fvcore, eval mode).

    python scripts/profile_all_models.py [--size 512 512] [--device cpu] [--models NAME ...]
                                         [--overwrite | --resume]

Writes results/profile/all_models.csv after every model (so a long CPU run can be resumed with
--resume, which keeps the rows already there; an existing file is never replaced without
--overwrite), one row per model of ``pna.models.list_models()``, with the paper-table rows it stands for. FPS is
left out (CPU timings say little); use ``python -m pna.profile MODEL --device cuda`` for that.
Conventions are those of ``pna.profile``: params include the auxiliary head; GFLOPs are fvcore's
multiply-add count of the eval-mode forward (PointRend: with its adaptive subdivision).
"""
from __future__ import annotations

import argparse
import csv
import os
import sys
import time
import warnings
from pathlib import Path

from pna.models import list_models
from pna.models.zoo import MODELS, PAPER_ROWS
from pna.profile import profile_model

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "profile" / "all_models.csv"
COLUMNS = ["model", "paper_rows", "backbone", "output_stride", "head", "refine", "aux", "size", "num_classes",
           "params_m", "gflops", "device", "skipped_ops", "seconds"]


def paper_rows_of(name: str) -> str:
    return "; ".join(sorted({f"{table}: {method}" + (f" ({backbone})" if backbone else "")
                             for (table, method, backbone), model in PAPER_ROWS.items() if model == name}))


def profile_row(name: str, size: tuple[int, int], device: str) -> dict:
    start = time.perf_counter()
    row = profile_model(name, size, 21, device, fps_iters=0)
    spec = MODELS[name]
    return {
        "model": name, "paper_rows": paper_rows_of(name), "backbone": spec.backbone,
        "output_stride": spec.output_stride, "head": spec.head, "refine": spec.refine or "", "aux": spec.aux,
        "size": f"{size[0]}x{size[1]}", "num_classes": 21, "params_m": round(row["params_m"], 3),
        "gflops": round(row["gflops"], 3), "device": row["device"],
        "skipped_ops": " ".join(f"{op}:{n}" for op, n in row["skipped_ops"].items()),
        "seconds": round(time.perf_counter() - start, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--models", nargs="+", default=None, help="a subset of pna.models.list_models()")
    parser.add_argument("--out", type=Path, default=OUT)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true", help="replace an existing CSV")
    mode.add_argument("--resume", action="store_true", help="keep the models already in the CSV")
    args = parser.parse_args()
    if args.out.exists() and not (args.overwrite or args.resume):
        raise SystemExit(f"{args.out} exists; pass --resume to complete it or --overwrite to replace it")
    names = args.models or list_models()
    unknown = sorted(set(names) - set(list_models()))
    if unknown:
        raise SystemExit(f"unknown model(s) {unknown}; expected names of pna.models.list_models()")
    warnings.filterwarnings("ignore", message=".*RANDOMLY INITIALISED.*")  # weights do not change counts
    done: dict[str, dict] = {}
    if args.out.exists() and args.resume:
        with args.out.open(newline="") as f:
            done = {r["model"]: r for r in csv.DictReader(f)}
        gone = sorted(set(done) - set(list_models()))  # renamed or removed models: their rows go
        if gone:
            print(f"dropping {len(gone)} model(s) no longer registered: {gone}", file=sys.stderr)
        done = {n: r for n, r in done.items() if n not in gone}
    for name in names:
        if name in done:
            continue
        done[name] = profile_row(name, tuple(args.size), args.device)
        r = done[name]
        print(f"{name:32s} params {r['params_m']:8.2f} M  GFLOPs {r['gflops']:9.2f}  ({r['seconds']} s)", flush=True)
        write_rows([done[n] for n in sorted(done)], args.out)
    print(f"wrote {args.out} ({len(done)} models)", file=sys.stderr)


def write_rows(rows: list[dict], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
