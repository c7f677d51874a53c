"""The refinement's 1x1 layers on CPU: ``F.linear`` (a matrix product) against oneDNN's 1x1
convolution of the same channels-last map, in inference (forward, no gradient) and in training
(forward + backward), the measurement behind :func:`pna.models.channels_last.linear_nhwc`.

Shapes: the SAM's four pointwise layers (qkv D -> 3D, GDFN expand D -> 2 * int(2.66 D), shrink
int(2.66 D) -> D, proj D -> D) at each stage of FCN-OS-32 + PNA: inference on a 512 x 512 image
(batch 1: 128x128 with D = 96 ... 16x16 with D = 768), training on the smoke step (batch 4 of
128 x 128 crops: 32x32 ... 4x4). Both sides are timed alternately in one process, best of
``--repeats`` rounds; the 1-minute load average is recorded. Writes ``results/benchmarks/pointwise_cpu.csv``.

    python benchmarks/pointwise.py
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from table_file import write_rows

ROOT = Path(__file__).resolve().parents[1]
# The GDFN's hidden width factor (Restormer; pna.models.sam.GatedFeedForward's default)
FFN_EXPANSION = 2.66
# (embed dim, side) of the four stages: 512 x 512 inference (strides 4..32 of the image) and the smoke step
INFERENCE_STAGES = ((96, 128), (192, 64), (384, 32), (768, 16))
TRAINING_STAGES = ((96, 32), (192, 16), (384, 8), (768, 4))


def as_linear(x, w):
    return F.linear(x, w.flatten(1))


def as_conv(x, w):
    return F.conv2d(x.permute(0, 3, 1, 2), w).permute(0, 2, 3, 1)


def best_ms(fn, repeats: int, calls: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, (time.perf_counter() - start) / calls)
    return 1000 * best


def layers(dim: int):
    hidden = int(dim * FFN_EXPANSION)
    return (("qkv", dim, 3 * dim), ("expand", dim, 2 * hidden), ("shrink", hidden, dim), ("proj", dim, dim))


def measure(mode: str, batch: int, stages, repeats: int) -> list[dict]:
    rows = []
    for dim, side in stages:
        for name, c_in, c_out in layers(dim):
            x = torch.randn(batch, side, side, c_in, requires_grad=mode == "training")
            w = torch.randn(c_out, c_in, 1, 1, requires_grad=mode == "training")
            grad = torch.randn(batch, side, side, c_out)
            if mode == "training":
                fns = {k: (lambda f=f: f(x, w).backward(grad)) for k, f in (("linear", as_linear), ("conv", as_conv))}
            else:
                fns = {k: (lambda f=f: f(x, w)) for k, f in (("linear", as_linear), ("conv", as_conv))}
            times = {k: float("inf") for k in fns}
            with torch.set_grad_enabled(mode == "training"):
                torch.testing.assert_close(as_conv(x, w), as_linear(x, w), atol=1e-3, rtol=1e-4)
                for _ in range(2):  # alternate the two sides: a disturbance hits both
                    for k, fn in fns.items():
                        times[k] = min(times[k], best_ms(fn, repeats, 5))
            row = dict(mode=mode, layer=name, batch=batch, side=side, c_in=c_in, c_out=c_out,
                       linear_ms=round(times["linear"], 2), conv_ms=round(times["conv"], 2),
                       load1=round(os.getloadavg()[0], 2), threads=torch.get_num_threads(), torch=torch.__version__)
            print(f"{mode:9s} {name:6s} {c_in:4d}->{c_out:4d} at {batch}x{side}x{side}: "
                  f"linear {row['linear_ms']} ms | conv {row['conv_ms']} ms", flush=True)
            rows.append(row)
    total = {k: sum(r[f"{k}_ms"] for r in rows) for k in ("linear", "conv")}
    print(f"{mode}: all layers linear {total['linear']:.1f} ms | conv {total['conv']:.1f} ms")
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "results/benchmarks/pointwise_cpu.csv")
    args = parser.parse_args(argv)
    rows = measure("inference", 1, INFERENCE_STAGES, args.repeats) + measure("training", 4, TRAINING_STAGES, args.repeats)
    write_rows(args.out, rows)


if __name__ == "__main__":
    sys.exit(main())
