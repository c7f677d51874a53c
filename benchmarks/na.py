"""Neighbourhood attention on CPU: forward+backward time, peak memory, GFLOP/s, ratio to a matmul.

Stage table (default): the four PNA stage shapes of a 512 x 512 input (B = 2, head dim 32) for
L in {5, 7, 9, 11}, per implementation: ``naive_unfold`` (``F.unfold`` of every L x L window,
``L * L`` copies of K and V), ``reference`` (advanced-index gather), ``slots`` (slot loop),
``dense`` (one score matmul, where the dispatcher allows it), ``tiled`` (halo tiles) and ``native``
(the fused C++ kernel, where it builds). Each
(impl, stage, L) runs in a fresh subprocess; times are the best (and the median) of ``--repeats``
calls after a warm-up (the CPU is shared: the best is the least disturbed); peak memory is the growth of its resident high-water
mark (VmHWM, reset after the inputs were made) over the RSS at that point. GFLOP/s counts the useful work only: six
window products (two forward, four backward) of ``2 * B * heads * H * W * L^2 * dim`` FLOPs; the
ratio divides the time by that of one square matmul of the same FLOPs timed in the same process.
The 1-minute load average is recorded beside every figure (the CPU is shared). Writes
``results/benchmarks/na_cpu.csv``.

Dispatch table (``--dispatch``): dense vs tiled, slots and native on small square maps, best
single-thread CPU time over interleaved rounds, the measurement behind ``pna.ops.na2d.CPU_DISPATCH``
(torch paths) and ``NATIVE_DENSE_MAX_PIXELS`` (with the kernel); writes ``results/benchmarks/na_dispatch_cpu.csv``.

    python benchmarks/na.py                                   # stage table, 3 timed repeats
    python benchmarks/na.py --impls slots tiled --kernels 9 --update   # re-measure some rows
    python benchmarks/na.py --dispatch --threads 1 --repeats 7
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pna.ops import na2d, native  # noqa: E402
from pna.ops.na2d_dense import fits_dense  # noqa: E402
from pna.ops.window import relative_bias, window_starts  # noqa: E402
from table_file import read_rows, write_rows  # noqa: E402  (benchmarks/table_file.py, beside this script)

STAGES = {"res2": (96, 128), "res3": (192, 64), "res4": (384, 32), "res5": (768, 16)}  # D @ H=W
HEAD_DIM, BATCH = 32, 2
KERNELS = (5, 7, 9, 11)
BASELINES = ("naive_unfold", "reference")  # slow, L * L copies of K and V: by default at L = 9 only
RESULTS = ROOT / "results" / "benchmarks"
COLUMNS = ["impl", "stage", "B", "heads", "H", "W", "dim", "L", "fwd_bwd_ms", "fwd_bwd_median_ms", "cpu_ms", "peak_mem_mb",
           "gflops_per_s",
           "matmul_ms", "ratio_to_matmul", "load_avg_1min", "status", "torch", "threads"]
DISPATCH_SIZES = (8, 12, 16, 20, 24, 32, 40, 48)
DISPATCH_HEADS = (1, 6)


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


def _resident_mb(field: str) -> float:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, in MiB (Linux)."""
    return int(re.search(field + r":\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024


def _reset_peak() -> None:
    # getrusage's maxrss would keep the peak of the process this one was spawned from
    Path("/proc/self/clear_refs").write_text("5")


def _available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def useful_flops(batch: int, heads: int, height: int, width: int, kernel_size: int, dim: int = HEAD_DIM) -> int:
    """FLOPs of forward+backward: 6 window products of one multiply-add (2 FLOPs) per pair and channel."""
    return 6 * 2 * batch * heads * height * width * min(kernel_size, height) * min(kernel_size, width) * dim


def _times_ms(fn, repeats: int) -> tuple[float, float, float]:
    """(best wall, median wall, CPU time of the best) of ``repeats`` calls after a warm-up, in ms.

    The CPU time (all threads of this process) does not count time spent waiting for a core, so
    with one thread it measures the work itself on a busy machine."""
    fn()
    times = []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        fn()
        times.append((time.perf_counter() - start, time.process_time() - cpu))
    times.sort()
    return 1e3 * times[0][0], 1e3 * times[len(times) // 2][0], 1e3 * times[0][1]


def matmul_ms(flops: int, repeats: int) -> float:
    """Time of one square fp32 matmul of ``flops`` FLOPs (2 n^3)."""
    n = max(8, round((flops / 2) ** (1 / 3)))
    a, b = torch.randn(n, n), torch.randn(n, n)
    return _times_ms(lambda: a @ b, repeats)[0] * flops / (2 * n**3)


def _inputs(batch, heads, size, kernel_size):
    shape = (batch, heads, size, size, HEAD_DIM)
    inputs = [torch.randn(shape).requires_grad_() for _ in range(3)]
    inputs[0].data.mul_(HEAD_DIM**-0.5)
    rpb = (0.02 * torch.randn(heads, 2 * kernel_size - 1, 2 * kernel_size - 1)).requires_grad_()
    return inputs, rpb, torch.randn(shape)


def _runner(impl, inputs, rpb, seed, kernel_size):
    def run():
        out = naive_unfold_na2d(*inputs, rpb, kernel_size) if impl == "naive_unfold" else na2d(
            *inputs, rpb, kernel_size, impl=impl)
        out.backward(seed)
        for t in (*inputs, rpb):
            t.grad = None
    return run


def worker(impl: str, batch: int, heads: int, size: int, kernel_size: int, repeats: int) -> dict:
    """Time forward+backward of one implementation at one shape (run in a fresh process)."""
    copy_mb = batch * heads * HEAD_DIM * size * size * kernel_size**2 * 4 / 2**20  # one L*L copy of K
    need_mb = 3.7 * copy_mb  # measured peak of the gathering impls: 3.2-3.6 copies
    if impl in ("naive_unfold", "reference") and need_mb > 0.85 * _available_mb():
        return {"status": f"skipped: needs ~{need_mb / 1024:.1f} GB, {_available_mb() / 1024:.1f} GB free"}
    inputs, rpb, seed = _inputs(batch, heads, size, kernel_size)
    if impl == "dense" and not fits_dense(inputs[0]):
        return {"status": "skipped: dense score matrix over the dispatcher's limit"}
    flops = useful_flops(batch, heads, size, size, kernel_size)
    _reset_peak()
    baseline = _resident_mb("VmRSS")
    ms, median, cpu = _times_ms(_runner(impl, inputs, rpb, seed, kernel_size), repeats)
    peak = _resident_mb("VmHWM") - baseline
    mm = matmul_ms(flops, max(repeats, 5))
    return {"fwd_bwd_ms": round(ms, 1), "fwd_bwd_median_ms": round(median, 1), "cpu_ms": round(cpu, 1),
            "peak_mem_mb": round(peak, 1),
            "gflops_per_s": round(flops / ms / 1e6, 1),
            "matmul_ms": round(mm, 2), "ratio_to_matmul": round(ms / mm, 1), "load_avg_1min": round(os.getloadavg()[0], 2),
            "status": "ok"}


def _run_worker(args, impl: str, batch: int, heads: int, size: int, kernel_size: int) -> dict:
    cmd = [sys.executable, __file__, "--worker", impl, str(batch), str(heads), str(size), str(kernel_size),
           "--threads", str(args.threads), "--repeats", str(args.repeats)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        return {"status": f"failed (exit {done.returncode}): {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(done.stdout.splitlines()[-1])


def _write(path: Path, rows: list[dict], keys: tuple[str, ...], update: bool) -> None:
    kept = []
    if update:
        measured = {tuple(str(row[k]) for k in keys) for row in rows}
        kept = [row for row in read_rows(path) if tuple(row[k] for k in keys) not in measured]
        print(f"updating {path} (kept {len(kept)} earlier rows)")
    write_rows(path, rows, kept=kept)  # this run's columns first, then any only the earlier rows have


def stage_table(args) -> None:
    _check_naive_matches_reference()
    rows = []
    print(f"torch {torch.__version__}, {args.threads} threads, B={BATCH}, head dim {HEAD_DIM}")
    print(f"{'impl':>13} {'stage':>5} {'L':>3} {'fwd+bwd ms':>11} {'peak MB':>8} {'GFLOP/s':>8} {'x matmul':>8} {'load':>5}")
    for kernel_size in args.kernels:
        for stage in args.stages:
            channels, size = STAGES[stage]
            for impl in args.impls:
                if impl in BASELINES and kernel_size != 9 and not args.all_baselines:
                    continue
                result = _run_worker(args, impl, BATCH, channels // HEAD_DIM, size, kernel_size)
                row = {"impl": impl, "stage": stage, "B": BATCH, "heads": channels // HEAD_DIM, "H": size, "W": size,
                       "dim": HEAD_DIM, "L": kernel_size} | {c: result.get(c, "") for c in COLUMNS[8:-2]}
                row |= {"torch": torch.__version__, "threads": args.threads}
                rows.append(row)
                print(f"{impl:>13} {stage:>5} {kernel_size:>3} {row['fwd_bwd_ms']!s:>11} {row['peak_mem_mb']!s:>8} "
                      f"{row['gflops_per_s']!s:>8} {row['ratio_to_matmul']!s:>8} {row['load_avg_1min']!s:>5}  "
                      f"{row['status'] if row['status'] != 'ok' else ''}", flush=True)
    _write(args.out or RESULTS / "na_cpu.csv", rows, ("impl", "stage", "L", "threads"), args.update)


def dispatch_table(args) -> None:
    """dense vs tiled (vs slots) on small maps: the crossover of the automatic dispatch.

    Rounds interleave the implementations and each keeps its best CPU time over the rounds: on a
    shared machine that is the least disturbed measure of the work (run with --threads 1)."""
    rows = []
    for kernel_size in args.kernels:
        for heads in DISPATCH_HEADS:
            for size in DISPATCH_SIZES:
                inputs, rpb, seed = _inputs(BATCH, heads, size, kernel_size)
                impls = [i for i in args.impls if i != "dense" or fits_dense(inputs[0])]  # else never picked
                runs = {impl: _runner(impl, inputs, rpb, seed, kernel_size) for impl in impls}
                best = {impl: (float("inf"),) * 3 for impl in impls}
                for _ in range(args.repeats):
                    for impl in impls:
                        best[impl] = min(best[impl], _times_ms(runs[impl], 1), key=lambda t: t[2])
                for impl in impls:
                    rows.append({"impl": impl, "B": BATCH, "heads": heads, "H": size, "W": size, "L": kernel_size,
                                 "cpu_ms": round(best[impl][2], 2), "wall_ms": round(best[impl][0], 2),
                                 "load_avg_1min": round(os.getloadavg()[0], 2), "threads": args.threads})
                fastest = min(impls, key=lambda i: best[i][2])
                print(f"L={kernel_size:>2} heads={heads:>2} {size:>3}x{size:<3} " +
                      " ".join(f"{i} {best[i][2]:8.2f}" for i in impls) + f"  -> {fastest}", flush=True)
    _write(args.out or RESULTS / "na_dispatch_cpu.csv", rows, ("impl", "heads", "H", "L"), args.update)


def _check_naive_matches_reference() -> None:
    q, k, v = (torch.randn(1, 2, 12, 11, 4, dtype=torch.float64) for _ in range(3))
    rpb = torch.randn(2, 17, 17, dtype=torch.float64)
    torch.testing.assert_close(naive_unfold_na2d(q, k, v, rpb, 9), na2d(q, k, v, rpb, 9, impl="reference"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dispatch", action="store_true", help="measure the dense/tiled crossover on small maps")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median), after one warm-up")
    parser.add_argument("--impls", nargs="+", default=None)
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=list(STAGES))
    parser.add_argument("--kernels", nargs="+", type=int, default=None)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--update", action="store_true", help="keep the rows of the CSV that this run does not measure")
    parser.add_argument("--all-baselines", action="store_true", help=f"run {BASELINES} at every L, not only L = 9")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        impl, *shape = args.worker
        print(json.dumps(worker(impl, *map(int, shape), args.repeats)))
        return
    if args.dispatch:
        args.impls = args.impls or ["dense", "tiled", "slots"] + (["native"] if native.available() else [])
        args.kernels = args.kernels or [3, 5, 7, 9, 11]
        dispatch_table(args)
    else:
        args.impls = args.impls or ["naive_unfold", "reference", "slots", "dense", "tiled"] + (
            ["native"] if native.available() else [])
        args.kernels = args.kernels or list(KERNELS)
        stage_table(args)


if __name__ == "__main__":
    main()
