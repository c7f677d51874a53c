"""Neighbourhood attention on a GPU: forward+backward time and peak memory per path, beside full
attention over the same map and an equal-FLOP matmul, at the stage shapes of a Cityscapes crop.

Shapes: the four PNA stages of the Cityscapes rows' 512 x 1024 crop (res2 128x256 D=96, res3 64x128
D=192, res4 32x64 D=384, res5 16x32 D=768; crop and per-GPU batch 4 from pna.configs.authors), head
dim 32, L = 9 and 7 (the Cityscapes DeepLabV3 and FPN rows' windows). Paths: ``flex`` (8 x 16 pixel
tiles per flex block, pna.ops.na2d_flex.FLEX_TILE), ``flex_rowmajor`` (blocks of 128 consecutive
pixels in row-major order), ``dense`` (where the dispatcher allows its score matrix), ``tiled``;
``sdpa_full``: ``torch.nn.functional.scaled_dot_product_attention`` over all H W pixels with the
same q, k, v (no bias). dtypes: fp16 (the AMP dtype) and fp32 by default, bf16 with ``--dtypes``
(each dtype and window is a flex kernel of its own to compile); the bias stays fp32 (a parameter
under autocast) and is cast inside, as in na2d.

Timing: CUDA events around each forward+backward, after ``--warmup`` calls (the first compiles the
flex kernel); best and median of ``--repeats``. ``peak_mem_mb``: torch.cuda.max_memory_allocated
during the timed calls above what was allocated before them (inputs), i.e. the op's working memory,
output and gradients. GFLOP/s counts useful work as benchmarks/na.py does (six window products; for
full attention the window is the whole map). ``matmul_ms``: one square matmul of the NA's useful
FLOPs in the same dtype; ``ratio_to_sdpa``: NA time / full-attention time of the same q, k, v.
An out-of-memory call is recorded as ``oom``. Writes ``results/benchmarks/na_cuda.csv``.

``--device cpu --quick`` runs the code at tiny shapes (each stage / 8, B = 1; fp32 and bf16) with
the CPU paths and SDPA, to check it without a GPU (flex has no CPU backward: recorded as skipped).

    python benchmarks/na_cuda.py                    # on a GPU -> results/benchmarks/na_cuda.csv
    python benchmarks/na_cuda.py --device cpu --quick --out /tmp/na_quick.csv
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
import na as shared  # noqa: E402  (benchmarks/na.py: FLOP count, inputs' head dim, CSV writer)
from na import HEAD_DIM, ROOT, useful_flops  # noqa: E402

from pna.configs.authors import AUTHORS  # noqa: E402
from pna.ops import na2d  # noqa: E402
from pna.ops.na2d_dense import fits_dense  # noqa: E402
from pna.ops.na2d_flex import FLEX_TILE, na2d_flex  # noqa: E402

SETTING = AUTHORS["cityscapes/fpn"]
CROP, BATCH = SETTING.crop, SETTING.batch_per_gpu  # (512, 1024), 4
STAGES = {"res2": (96, 4), "res3": (192, 8), "res4": (384, 16), "res5": (768, 32)}  # channels, stride
KERNELS = (9, 7)
IMPLS = ("flex", "flex_rowmajor", "dense", "tiled")
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
QUICK_SHRINK = 8  # --quick: every stage's map / 8, batch 1
RECOMPILE_LIMIT = 64  # one flex kernel per (dtype, L): more than torch's default limit of 8 variants
COLUMNS = ["impl", "stage", "dtype", "B", "heads", "H", "W", "dim", "L", "fwd_bwd_ms", "fwd_bwd_median_ms",
           "peak_mem_mb", "gflops_per_s", "matmul_ms", "ratio_to_matmul", "sdpa_ms", "ratio_to_sdpa", "status",
           "device", "torch", "tf32"]


def row_major_tile(width: int) -> tuple[int, int]:
    """The tile whose tile order is plain row-major order in flex blocks of 128 pixels.

    Example:
        >>> row_major_tile(256), row_major_tile(64)
        ((1, 128), (2, 64))
    """
    block = FLEX_TILE[0] * FLEX_TILE[1]
    if block % width and width % block:
        raise ValueError(f"row-major flex blocks need a width that divides {block} or is a multiple of it, got {width}")
    return max(1, block // width), min(width, block)


class Clock:
    """Best and median milliseconds of ``fn`` and its peak memory above the start (MiB)."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def measure(self, fn, warmup: int, repeats: int) -> tuple[float, float, float]:
        for _ in range(warmup):
            fn()
        times = []
        if self.cuda:
            torch.cuda.synchronize()
            base = torch.cuda.memory_allocated()
            torch.cuda.reset_peak_memory_stats()
        else:
            shared._reset_peak()
            base = shared._resident_mb("VmRSS") * 2 ** 20
        for _ in range(repeats):
            if self.cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                end.synchronize()
                times.append(start.elapsed_time(end))
            else:
                start = time.perf_counter()
                fn()
                times.append(1e3 * (time.perf_counter() - start))
        peak = torch.cuda.max_memory_allocated() if self.cuda else shared._resident_mb("VmHWM") * 2 ** 20
        return min(times), statistics.median(times), (peak - base) / 2 ** 20


def _inputs(batch, heads, height, width, kernel_size, dtype, device):
    shape = (batch, heads, height, width, HEAD_DIM)
    q, k, v = (torch.randn(shape, device=device, dtype=dtype) for _ in range(3))
    q *= HEAD_DIM ** -0.5
    rpb = 0.02 * torch.randn(heads, 2 * kernel_size - 1, 2 * kernel_size - 1, device=device)
    return [t.requires_grad_() for t in (q, k, v, rpb)], torch.randn(shape, device=device, dtype=dtype)


def _step(forward, tensors, seed):
    def run():
        forward().backward(seed)
        for t in tensors:
            t.grad = None
    return run


def na_runner(impl: str, inputs, seed, kernel_size: int):
    """One forward+backward of an NA path; None where the path does not apply (and why)."""
    q, k, v, rpb = inputs
    if impl.startswith("flex"):
        if not q.is_cuda:
            return None, "skipped: flex_attention has no CPU backward"
        tile = FLEX_TILE if impl == "flex" else row_major_tile(q.shape[3])
        return _step(lambda: na2d_flex(q, k, v, rpb.to(q.dtype), kernel_size, tile=tile), inputs, seed), ""
    if impl == "dense" and not fits_dense(q):
        return None, "skipped: dense score matrix over the dispatcher's limit"
    return _step(lambda: na2d(q, k, v, rpb, kernel_size, impl=impl), inputs, seed), ""


def sdpa_runner(inputs, seed):
    """Full attention over all H W pixels with the same q, k, v: ``(B, heads, H W, dim)`` views."""
    q, k, v = inputs[:3]
    return _step(lambda: F.scaled_dot_product_attention(q.flatten(2, 3), k.flatten(2, 3), v.flatten(2, 3)).view_as(seed),
                 inputs[:3], seed)


def matmul_ms(flops: int, dtype, device, clock: Clock) -> float:
    """Time of one square matmul of ``flops`` FLOPs (2 n^3) in ``dtype``."""
    n = max(8, round((flops / 2) ** (1 / 3)))
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    return clock.measure(lambda: a @ b, 2, 5)[0] * flops / (2 * n ** 3)


def _measure(clock, fn, args) -> dict:
    try:
        best, median, peak = clock.measure(fn, args.warmup, args.repeats)
    except torch.cuda.OutOfMemoryError as error:
        return {"status": f"oom: {str(error).splitlines()[0][:120]}"}
    except Exception as error:  # noqa: BLE001: one path failing (a compile error) is that row's result
        return {"status": f"failed: {type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}"}
    finally:
        if clock.cuda:
            torch.cuda.empty_cache()
    return {"fwd_bwd_ms": round(best, 3), "fwd_bwd_median_ms": round(median, 3), "peak_mem_mb": round(peak, 1),
            "status": "ok"}


def stage_rows(args, device, dtype_name, stage, clock) -> list[dict]:
    """The rows of one (dtype, stage): full attention, then every path at every L."""
    channels, stride = STAGES[stage]
    shrink = QUICK_SHRINK if args.quick else 1
    batch, heads = (1 if args.quick else BATCH), channels // HEAD_DIM
    height, width = CROP[0] // stride // shrink, CROP[1] // stride // shrink
    dtype = DTYPES[dtype_name]
    common = {"stage": stage, "dtype": dtype_name, "B": batch, "heads": heads, "H": height, "W": width,
              "dim": HEAD_DIM, "device": str(device), "torch": torch.__version__,
              "tf32": torch.backends.cuda.matmul.allow_tf32}
    inputs, seed = _inputs(batch, heads, height, width, max(args.kernels), dtype, device)
    full = common | {"impl": "sdpa_full", "L": ""} | _measure(clock, sdpa_runner(inputs, seed), args)
    full["gflops_per_s"] = _gflops(useful_flops(batch, heads, height, width, max(height, width)), full)
    rows = [full]
    for kernel_size in args.kernels:
        inputs, seed = _inputs(batch, heads, height, width, kernel_size, dtype, device)
        flops = useful_flops(batch, heads, height, width, kernel_size)
        mm = matmul_ms(flops, dtype, device, clock)
        for impl in args.impls:
            fn, why = na_runner(impl, inputs, seed, kernel_size)
            row = common | {"impl": impl, "L": kernel_size, "matmul_ms": round(mm, 3)}
            row |= _measure(clock, fn, args) if fn else {"status": why}
            row["gflops_per_s"] = _gflops(flops, row)
            if row["status"] == "ok":
                row["ratio_to_matmul"] = round(row["fwd_bwd_ms"] / mm, 2)
                if full["status"] == "ok":
                    row |= {"sdpa_ms": full["fwd_bwd_ms"], "ratio_to_sdpa": round(row["fwd_bwd_ms"] / full["fwd_bwd_ms"], 3)}
            rows.append(row)
    return rows


def _gflops(flops: int, row: dict):
    return round(flops / row["fwd_bwd_ms"] / 1e6, 1) if row.get("status") == "ok" else ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--quick", action="store_true", help="tiny shapes (stages / 8, batch 1): a dry run of the code")
    parser.add_argument("--dtypes", nargs="+", choices=list(DTYPES), default=None)
    parser.add_argument("--stages", nargs="+", choices=list(STAGES), default=list(STAGES))
    parser.add_argument("--kernels", nargs="+", type=int, default=list(KERNELS))
    parser.add_argument("--impls", nargs="+", choices=list(IMPLS), default=list(IMPLS))
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "na_cuda.csv")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA GPU here (try --device cpu --quick)")
    args.dtypes = args.dtypes or (["fp32", "bf16"] if args.device == "cpu" else ["fp16", "fp32"])
    device, clock = torch.device(args.device), Clock(torch.device(args.device))
    torch._dynamo.config.cache_size_limit = RECOMPILE_LIMIT  # the name torch 2.0-2.14 all know
    name = torch.cuda.get_device_name() if clock.cuda else f"cpu ({torch.get_num_threads()} threads)"
    print(f"{name}, torch {torch.__version__}, crop {CROP}, B={1 if args.quick else BATCH}, head dim {HEAD_DIM}")
    rows = []
    for dtype_name in args.dtypes:
        for stage in args.stages:
            for row in stage_rows(args, device, dtype_name, stage, clock):
                rows.append(row)
                print(f"{row['impl']:>14} {stage:>5} {dtype_name:>5} L={row['L']!s:>2} {row.get('fwd_bwd_ms', '')!s:>9} ms "
                      f"{row.get('peak_mem_mb', '')!s:>8} MB x sdpa {row.get('ratio_to_sdpa', '')!s:>6} "
                      f"x matmul {row.get('ratio_to_matmul', '')!s:>6} {'' if row['status'] == 'ok' else row['status']}",
                      flush=True)
            shared._write(args.out, [{c: row.get(c, "") for c in COLUMNS} for row in rows], (), update=False)


if __name__ == "__main__":
    main()
