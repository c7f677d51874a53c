"""Training throughput (images/s) of smoke configs on this machine's CPU.

Times the real training step (forward, losses, backward, fused AdamW, poly schedule) on the
synthetic training set after a short warm-up, and writes results/benchmarks/train_throughput.csv.
Also prints the estimated wall time of the full smoke schedule (train.iters iterations).

    python benchmarks/train_throughput.py                                   # Table 1 rows
    python benchmarks/train_throughput.py --configs voc/fcn_r50_os32_pna --iters 20 --threads 2
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from pna.configs import load_config  # noqa: E402
from pna.loader import train_batches  # noqa: E402
from pna.paths import results_dir  # noqa: E402
from pna.rundir import RunDir  # noqa: E402
from pna.train import Trainer  # noqa: E402

DEFAULT = ["voc/fcn_r50_os32", "voc/fcn_r50_os8", "voc/fcn_r50_os32_pna_nam", "voc/fcn_r50_os32_pna"]


def measure(name: str, iters: int, warmup: int, overrides: list[str]) -> dict:
    cfg = load_config(name, "smoke", overrides + ["train.device=cpu"])
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = Trainer(cfg, RunDir(tmp), torch.device("cpu"), resume=False, progress=False)
        batches = train_batches(trainer.train_set, cfg.train.batch_size, cfg.train.seed)
        for _ in range(warmup):
            trainer.train_step(next(batches))
        data_time, start = 0.0, time.perf_counter()
        for _ in range(iters):
            t = time.perf_counter()
            batch = next(batches)
            data_time += time.perf_counter() - t
            trainer.train_step(batch)
        seconds = time.perf_counter() - start
        t = time.perf_counter()
        trainer.evaluate()
        eval_seconds = time.perf_counter() - t
    per_iter = seconds / iters
    return {"config": name, "crop": "x".join(map(str, cfg.data.crop)), "batch": cfg.train.batch_size,
            "threads": torch.get_num_threads(), "images_per_s": round(cfg.train.batch_size / per_iter, 2),
            "s_per_iter": round(per_iter, 4), "data_share": round(data_time / seconds, 3),
            "eval_s": round(eval_seconds, 2), "smoke_iters": cfg.train.iters,
            "est_train_s": round(per_iter * cfg.train.iters + eval_seconds, 1),
            "cpu": platform.processor() or platform.machine(), "load_avg_1m": round(os.getloadavg()[0], 2),
            "torch": torch.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=DEFAULT)
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for name in args.configs:
        row = measure(name, args.iters, args.warmup, args.set)
        rows.append(row)
        print(f"{name:32s} {row['images_per_s']:7.2f} images/s  {row['s_per_iter']:.3f} s/iter  "
              f"eval {row['eval_s']:.1f} s  -> smoke run ~{row['est_train_s']:.0f} s "
              f"({row['threads']} threads, load {row['load_avg_1m']})", flush=True)
    out = results_dir() / "benchmarks" / "train_throughput.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
