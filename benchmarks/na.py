"""Neighbourhood attention on CPU: forward+backward time and peak memory per implementation.

Compares ``reference`` (advanced-index gather of every window), ``fast`` (the slot loop used in
training) and ``naive_unfold`` (``F.unfold`` of every L x L window of K and V, then a per-query
selection of its clamped window: same semantics, ``L * L`` copies of K and V) at the four PNA
stage shapes of a 512 x 512 input (B = 2, head dim 32, L = 9). Each (impl, stage) runs in a fresh
subprocess; peak memory is the growth of its peak RSS (``getrusage``) over the RSS after the
inputs were made. Writes ``results/benchmarks/na_cpu.csv``.

    python benchmarks/na.py            # 3 timed repeats
    python benchmarks/na.py --quick    # 1 timed repeat
    python benchmarks/na.py --stages res2 --impls naive_unfold --update   # re-measure some rows
"""
from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pna.ops import na2d  # noqa: E402
from pna.ops.window import relative_bias, window_starts  # noqa: E402

STAGES = {"res2": (96, 128), "res3": (192, 64), "res4": (384, 32), "res5": (768, 16)}  # D @ H=W
HEAD_DIM, KERNEL, BATCH = 32, 9, 2
CSV_PATH = ROOT / "results" / "benchmarks" / "na_cpu.csv"
COLUMNS = ["impl", "stage", "B", "heads", "H", "W", "dim", "L", "fwd_bwd_ms", "peak_mem_mb", "status",
           "torch", "threads"]


def naive_unfold_na2d(q, k, v, rpb, kernel_size):
    """Clamped neighbourhood attention via ``F.unfold``: materialises all L*L neighbours of K and V."""
    batch, heads, height, width, dim = q.shape
    starts = window_starts(height, kernel_size)[:, None] * (width - kernel_size + 1) + window_starts(width, kernel_size)
    query_window = starts.flatten()  # index of each query's (unpadded) window among all L x L windows

    def neighbours(x):  # (B, h, H, W, C) -> (B*h, H*W, L*L, C)
        channels = x.shape[-1]
        planes = x.reshape(batch * heads, height, width, channels).permute(0, 3, 1, 2)
        windows = F.unfold(planes, kernel_size)  # (B*h, C*L*L, windows)
        windows = windows.index_select(2, query_window)  # (B*h, C*L*L, H*W)
        return windows.view(batch * heads, channels, kernel_size**2, height * width).permute(0, 3, 2, 1)

    q_flat = q.reshape(batch * heads, height * width, 1, dim)
    logits = (q_flat @ neighbours(k).transpose(-1, -2)).view(batch, heads, height, width, -1)
    attn = (logits + relative_bias(rpb, height, width, kernel_size)).softmax(-1)
    out = attn.view(batch * heads, height * width, 1, -1) @ neighbours(v)
    return out.view(batch, heads, height, width, -1)


def _max_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def worker(impl: str, stage: str, repeats: int) -> dict:
    """Time forward+backward of one implementation at one stage (run in a fresh process)."""
    channels, size = STAGES[stage]
    heads = channels // HEAD_DIM
    shape = (BATCH, heads, size, size, HEAD_DIM)
    copy_mb = BATCH * channels * size * size * KERNEL**2 * 4 / 2**20  # one L*L copy of K (or V)
    need_mb = 3.7 * copy_mb  # measured peak of the gathering impls: 3.2-3.6 copies
    if impl != "fast" and need_mb > 0.85 * _available_mb():  # do not push a shared machine into OOM
        return {"status": f"skipped: needs ~{need_mb / 1024:.1f} GB, {_available_mb() / 1024:.1f} GB free"}
    inputs = [torch.randn(shape).requires_grad_() for _ in range(3)]
    inputs[0].data.mul_(HEAD_DIM**-0.5)
    rpb = (0.02 * torch.randn(heads, 2 * KERNEL - 1, 2 * KERNEL - 1)).requires_grad_()
    seed = torch.randn(shape)
    run = (lambda: naive_unfold_na2d(*inputs, rpb, KERNEL)) if impl == "naive_unfold" else (
        lambda: na2d(*inputs, rpb, KERNEL, impl=impl))
    baseline = _max_rss_mb()
    times = []
    for i in range(repeats + 1):  # the first run is a warm-up
        start = time.perf_counter()
        run().backward(seed)
        times.append(time.perf_counter() - start)
        for t in (*inputs, rpb):
            t.grad = None
    times = sorted(times[1:])
    return {"fwd_bwd_ms": round(1e3 * times[len(times) // 2], 1), "peak_mem_mb": round(_max_rss_mb() - baseline, 1),
            "status": "ok"}


def _check_naive_matches_fast() -> None:
    q, k, v = (torch.randn(1, 2, 12, 11, 4, dtype=torch.float64) for _ in range(3))
    rpb = torch.randn(2, 2 * KERNEL - 1, 2 * KERNEL - 1, dtype=torch.float64)
    torch.testing.assert_close(naive_unfold_na2d(q, k, v, rpb, KERNEL), na2d(q, k, v, rpb, KERNEL, impl="fast"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one timed repeat instead of three")
    parser.add_argument("--impls", nargs="+", default=["naive_unfold", "reference", "fast"])
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=CSV_PATH)
    parser.add_argument("--update", action="store_true",
                        help="keep the rows of --out that this run does not measure (same impl and stage)")
    parser.add_argument("--worker", nargs=2, metavar=("IMPL", "STAGE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(worker(*args.worker, repeats)))
        return
    _check_naive_matches_fast()
    rows = []
    print(f"torch {torch.__version__}, {args.threads} threads, B={BATCH}, head dim {HEAD_DIM}, L={KERNEL}")
    print(f"{'impl':>13} {'stage':>5} {'heads':>5} {'HxW':>8} {'fwd+bwd ms':>11} {'peak MB':>9}  status")
    for stage in args.stages:
        for impl in args.impls:
            cmd = [sys.executable, __file__, "--worker", impl, stage, "--threads", str(args.threads)]
            cmd += ["--quick"] if args.quick else []
            done = subprocess.run(cmd, capture_output=True, text=True)
            result = json.loads(done.stdout.splitlines()[-1]) if done.returncode == 0 else {
                "status": f"failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}"}
            channels, size = STAGES[stage]
            row = {"impl": impl, "stage": stage, "B": BATCH, "heads": channels // HEAD_DIM, "H": size, "W": size,
                   "dim": HEAD_DIM, "L": KERNEL, "fwd_bwd_ms": result.get("fwd_bwd_ms", ""),
                   "peak_mem_mb": result.get("peak_mem_mb", ""), "status": result["status"],
                   "torch": torch.__version__, "threads": args.threads}
            rows.append(row)
            print(f"{impl:>13} {stage:>5} {row['heads']:>5} {f'{size}x{size}':>8} {row['fwd_bwd_ms']!s:>11} "
                  f"{row['peak_mem_mb']!s:>9}  {row['status']}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.exists() and args.update:
        measured = {(row["impl"], row["stage"]) for row in rows}
        with args.out.open(newline="") as f:
            kept = [row for row in csv.DictReader(f) if (row["impl"], row["stage"]) not in measured]
        order = {stage: i for i, stage in enumerate(STAGES)}
        rows = sorted(kept + rows, key=lambda row: order[row["stage"]])
        print(f"updating {args.out} (kept {len(kept)} earlier rows)")
    elif args.out.exists():
        print(f"replacing the previous {args.out}")
    with args.out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
