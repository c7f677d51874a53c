"""The SAM feed-forward (GDFN) without gradients: the whole map against slabs of rows, the
measurement behind ``pna.models.sam.SLAB_PIXELS``.

Shapes: the four stages of FCN-OS-32 + PNA on a 512 x 512 image (128x128 with D = 96 ... 16x16 with
D = 768) and on a 1024 x 2048 Cityscapes image (256x512 ... 32x64), batch 1. Both paths of the same
module run alternately in one process, best of ``--repeats`` rounds; each records its minor page
faults per call (``getrusage``: the fresh pages the kernel faults and zeroes) and the 1-minute
load average. Writes ``results/benchmarks/sam_slabs_cpu.csv``.

    python benchmarks/sam_slabs.py
"""
from __future__ import annotations

import argparse
import os
import resource
import time
from pathlib import Path

import torch

from pna.models.sam import SLAB_PIXELS, GatedFeedForward
from table_file import code_version, write_rows

ROOT = Path(__file__).resolve().parents[1]
# (embed dim, height, width) of the four refinement stages (strides 4, 8, 16, 32 of the image)
STAGES = {"512x512": ((96, 128, 128), (192, 64, 64), (384, 32, 32), (768, 16, 16)),
          "1024x2048": ((96, 256, 512), (192, 128, 256), (384, 64, 128), (768, 32, 64))}


def timed(fn, x: torch.Tensor) -> tuple[float, float]:
    """(ms, minor page faults) of one call."""
    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    fn(x)
    return 1e3 * (time.perf_counter() - start), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def compare(dim: int, height: int, width: int, repeats: int) -> dict:
    ffn = GatedFeedForward(dim).eval()
    x = torch.randn(1, height, width, dim)
    paths = {"whole": ffn.forward_whole, "slabs": ffn.forward_nhwc}
    best = {name: (float("inf"), 0.0) for name in paths}
    for fn in paths.values():
        fn(x)  # warm-up
    for _ in range(repeats):
        for name, fn in paths.items():
            best[name] = min(best[name], timed(fn, x))
    return {"dim": dim, "map": f"{height}x{width}", "whole_ms": round(best["whole"][0], 2),
            "slabs_ms": round(best["slabs"][0], 2), "speedup": round(best["whole"][0] / best["slabs"][0], 2),
            "whole_page_faults": int(best["whole"][1]), "slabs_page_faults": int(best["slabs"][1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "benchmarks" / "sam_slabs_cpu.csv")
    args = parser.parse_args()
    code = code_version()
    rows = []
    with torch.no_grad():
        for image, stages in STAGES.items():
            for dim, height, width in stages:
                load = os.getloadavg()[0]
                row = {"image": image, **compare(dim, height, width, args.repeats), "slab_pixels": SLAB_PIXELS,
                       "threads": torch.get_num_threads(), "load_avg_1min_before": round(load, 2),
                       "load_avg_1min_after": round(os.getloadavg()[0], 2), "torch": torch.__version__, "code": code}
                print(row)
                rows.append(row)
    write_rows(args.out, rows)


if __name__ == "__main__":
    main()
