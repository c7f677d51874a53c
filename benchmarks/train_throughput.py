"""Training throughput of smoke configs on this machine's CPU, and where the step time goes.

Times the real training step (forward, losses, backward, fused AdamW, poly schedule) on the
synthetic training set after a short warm-up (the fastest of a few timings), then the evaluation, and writes one line per
(config, recipe, threads) to results/benchmarks/train_throughput.csv: wall and CPU seconds per
iteration, the data-loading share, the share of neighbourhood attention (the step's CPU time again with
the NAM's ``na2d`` replaced by a free stand-in), the estimated time of the whole smoke run, and the
1-minute load average before and after (other processes on the cores slow every figure down).

    python benchmarks/train_throughput.py                                   # Table 1 rows, current recipe
    python benchmarks/train_throughput.py --recipe before --label before    # the old smoke recipe
    python benchmarks/train_throughput.py --configs voc/fcn_r50_os32_pna --threads 1 2 --append
    OMP_WAIT_POLICY=PASSIVE python benchmarks/train_throughput.py --threads 2 --append   # set before torch loads

On a 2-core machine shared with other processes, 2 torch threads under OpenMP's default (spinning)
wait policy can be 10x slower than 1 thread; OMP_WAIT_POLICY=PASSIVE avoids that (see the CSV).
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import tempfile
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import pna.models.nam as nam_module  # noqa: E402
from pna.configs import load_config  # noqa: E402
from pna.engine.loader import train_batches  # noqa: E402
from pna.paths import results_dir  # noqa: E402
from pna.engine.rundir import RunDir  # noqa: E402
from pna.engine.train import Trainer  # noqa: E402

DEFAULT = ["voc/fcn_r50_os32", "voc/fcn_r50_os8", "voc/fcn_r50_os32_pna_nam", "voc/fcn_r50_os32_pna"]
# The smoke recipe before issue 10 (96 px images, 64 px crops, batch 8, lr 1e-3, 160 iterations),
# as overrides of the current one.
RECIPES = {
    "current": [],
    "before": ["data.options={'num_train': 512, 'num_val': 64, 'size': 96, 'seed': 0}", "data.crop=(64,64)",
               "data.scale_range=(0.75,1.25)", "train.batch_size=8", "optim.lr=1e-3", "train.iters=160",
               "eval.crop=(64,64)", "eval.stride=(48,48)"],
}


@contextmanager
def free_neighbourhood_attention():
    """Replace the NAM's attention by ``v`` itself (same shapes, no cost) to time the rest."""
    original = nam_module.na2d
    nam_module.na2d = lambda q, k, v, rpb, kernel_size, impl="auto": v
    try:
        yield
    finally:
        nam_module.na2d = original


def time_steps(trainer: Trainer, batches, iters: int) -> tuple[float, float, float]:
    """(wall s, CPU s, data-loading wall s) of ``iters`` training steps."""
    data_time, wall, cpu = 0.0, time.perf_counter(), time.process_time()
    for _ in range(iters):
        t = time.perf_counter()
        batch = next(batches)
        data_time += time.perf_counter() - t
        trainer.train_step(batch, False)
    return time.perf_counter() - wall, time.process_time() - cpu, data_time


def best_of(repeats: int, trainer: Trainer, batches, iters: int) -> tuple[float, float, float]:
    """The fastest of ``repeats`` timings (other processes only ever slow a timing down)."""
    return min((time_steps(trainer, batches, iters) for _ in range(repeats)), key=lambda t: t[0])


def measure(name: str, iters: int, warmup: int, overrides: list[str], threads: int, label: str,
            compile_model: bool = False, repeats: int = 3) -> dict:
    torch.set_num_threads(threads)
    cfg = load_config(name, "smoke", overrides + ["train.device=cpu"])
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer = Trainer(cfg, RunDir(tmp), torch.device("cpu"), resume=False, progress=False)
        batches = train_batches(trainer.train_set, cfg.train.batch_size, cfg.train.seed)
        if compile_model:  # inductor on the CPU: its compile time counts against a smoke run too
            trainer.net = torch.compile(trainer.model)
        compile_start = time.perf_counter()
        time_steps(trainer, batches, warmup)
        warmup_seconds = time.perf_counter() - compile_start
        seconds, cpu_seconds, data_time = best_of(repeats, trainer, batches, iters)
        na_share = None
        has_nam = any(isinstance(m, nam_module.NeighbourhoodAggregation) for m in trainer.model.modules())
        if has_nam and not compile_model:
            with free_neighbourhood_attention():
                time_steps(trainer, batches, 1)
                _, without, _ = best_of(repeats, trainer, batches, iters)
            na_share = round(max(0.0, 1 - without / cpu_seconds), 3)  # CPU time: less hurt by other processes
        t = time.perf_counter()
        trainer.evaluate()
        eval_seconds = time.perf_counter() - t
    per_iter = seconds / iters
    return {"label": label, "config": name, "image_size": cfg.data.options.get("size"),
            "crop": "x".join(map(str, cfg.data.crop)), "batch": cfg.train.batch_size, "lr": cfg.optim.lr,
            "threads": threads, "repeats": repeats, "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            "compiled": compile_model, "warmup_s": round(warmup_seconds, 1),
            "images_per_s": round(cfg.train.batch_size / per_iter, 2),
            "s_per_iter": round(per_iter, 4), "cpu_s_per_iter": round(cpu_seconds / iters, 4),
            "data_share": round(data_time / seconds, 3), "na_share": na_share,
            "eval_images": len(trainer.eval_set), "eval_s": round(eval_seconds, 2), "smoke_iters": cfg.train.iters,
            "est_train_s": round(per_iter * cfg.train.iters + eval_seconds, 1),
            "load_avg_1m_before": round(load_before, 2), "load_avg_1m_after": round(os.getloadavg()[0], 2),
            "cpu": platform.processor() or platform.machine(), "torch": torch.__version__}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", nargs="+", default=DEFAULT)
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="current")
    parser.add_argument("--label", help="first column of the CSV lines (default: the recipe name)")
    parser.add_argument("--iters", type=int, default=10, help="steps per timing")
    parser.add_argument("--repeats", type=int, default=3, help="timings per config; the fastest is kept")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (compile time in warmup_s)")
    parser.add_argument("--out", type=Path, default=None, help="default: results/benchmarks/train_throughput.csv")
    parser.add_argument("--append", action="store_true", help="add lines to the CSV instead of replacing it")
    args = parser.parse_args()
    overrides = RECIPES[args.recipe] + args.set
    rows = []
    for threads in args.threads:
        for name in args.configs:
            row = measure(name, args.iters, args.warmup, overrides, threads, args.label or args.recipe, args.compile,
                          args.repeats)
            rows.append(row)
            print(f"{row['label']:8s} {name:32s} {row['crop']:>7s} b{row['batch']} {threads}t  "
                  f"{row['s_per_iter']:.3f} s/iter ({row['cpu_s_per_iter']:.3f} CPU)  data {row['data_share']:.0%}  "
                  f"NA {row['na_share'] if row['na_share'] is not None else '-'}  eval {row['eval_s']:.1f} s  "
                  f"-> smoke run ~{row['est_train_s']:.0f} s  (load {row['load_avg_1m_before']}"
                  f"->{row['load_avg_1m_after']})", flush=True)
    out = args.out or results_dir() / "benchmarks" / "train_throughput.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    append = args.append and out.is_file()
    with open(out, "a" if append else "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        if not append:
            writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
