"""What the boundary metrics add to an evaluation: seconds per image with and without them.

Runs :func:`pna.engine.evaluate.evaluate_model` (the loop every evaluation goes through) on a
Cityscapes-sized image (1024 x 2048, 19 classes, 5 stages) with a stand-in model that returns
precomputed random logits, so the timed work is what evaluation does after the forward pass:
arg-max, confusion matrices, and (with) Boundary IoU, trimap mIoU and the boundary F-score.

Two kinds of random logits:

* ``smooth``: each stage's logits drawn at its output stride (32, 32, 16, 8, 4) and upsampled
  bilinearly, as a segmentor's are; the label is drawn the same way at stride 16, one class of it
  set to the ignore index;
* ``noise``: independent logits at every pixel (the worst case: every pixel is a contour).

Each image is evaluated without and with the metrics in alternating order; the CPU is shared, so
the figures are medians over ``--images`` and the 1-minute load average is written beside them.
On a CPU shared by more processes than it has cores, torch's OpenMP threads wait on each other at
every operation, and the boundary metrics are many short operations: one thread per process
(``--threads 1``) gives the steadier figure there. Writes ``results/benchmarks/boundary_<device>.csv``.

    python benchmarks/boundary.py                   # 5 images per case, CPU, torch's threads
    python benchmarks/boundary.py --threads 1 2 --images 3 --cases smooth
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pna.engine.evaluate import evaluate_model  # noqa: E402
from table_file import write_rows  # noqa: E402  (benchmarks/table_file.py, beside this script)

HEIGHT, WIDTH, CLASSES = 1024, 2048, 19  # Cityscapes
STAGE_STRIDES = {"P0": 32, "P1": 32, "P2": 16, "P3": 8, "P4": 4}  # PNA's output strides
LABEL_STRIDE = 16
IGNORED_CLASS = CLASSES - 1  # one class of the random label becomes "ignored" (about 1 pixel in 19)
COLUMNS = ["case", "height", "width", "classes", "stages", "images", "without_s", "with_s", "ratio",
           "added_pct", "cpu_without_s", "cpu_with_s", "cpu_ratio", "threads", "device", "load_avg_1min", "torch"]


def random_logits(stride: int, generator: torch.Generator) -> torch.Tensor:
    coarse = torch.randn(1, CLASSES, -(-HEIGHT // stride), -(-WIDTH // stride), generator=generator)
    return F.interpolate(coarse, size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False)


class OneImage(torch.utils.data.Dataset):
    num_classes, ignore_index, eval_classes = CLASSES, 255, None
    classes = [f"class{c}" for c in range(CLASSES)]

    def __init__(self, label: torch.Tensor):
        self.label = label

    def __len__(self) -> int:
        return 1

    def __getitem__(self, index: int) -> dict:
        return {"image": torch.zeros(3, HEIGHT, WIDTH), "label": self.label, "id": str(index)}


class FixedLogits(torch.nn.Module):
    """A stand-in segmentor: the same precomputed logits for every stage call."""

    stage_names = list(STAGE_STRIDES)

    def __init__(self, logits: dict[str, torch.Tensor]):
        super().__init__()
        self.logits = logits

    def forward(self, images: torch.Tensor, return_all: bool = False) -> dict[str, torch.Tensor]:
        return self.logits


def make_case(case: str, seed: int) -> tuple[FixedLogits, OneImage]:
    generator = torch.Generator().manual_seed(seed)
    label = random_logits(LABEL_STRIDE, generator)[0].argmax(0)
    label[label == IGNORED_CLASS] = 255
    if case == "smooth":
        logits = {name: random_logits(stride, generator) for name, stride in STAGE_STRIDES.items()}
    else:
        logits = {name: torch.randn(1, CLASSES, HEIGHT, WIDTH, generator=generator) for name in STAGE_STRIDES}
    return FixedLogits(logits), OneImage(label)


def timed(model, dataset, boundary: bool, device: str) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one evaluation (CPU time is what the work costs on a
    shared machine, where the wall clock also counts the time other processes held the cores)."""
    settings = {} if boundary else {"boundary": None}
    start, cpu = time.perf_counter(), time.process_time()
    evaluate_model(model, dataset, device, **settings)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu


def measure(case: str, images: int, device: str) -> dict:
    times: dict[bool, list[tuple[float, float]]] = {False: [], True: []}
    for i in range(images + 1):  # the first image warms up allocator and caches, and is not counted
        model, dataset = make_case(case, seed=i)
        model.logits = {k: v.to(device) for k, v in model.logits.items()}
        for flag in ((False, True) if i % 2 else (True, False)):
            measured = timed(model, dataset, flag, device)
            if i:
                times[flag].append(measured)
    (base, full), (cpu_base, cpu_full) = [[statistics.median(t[k] for t in times[flag]) for flag in (False, True)]
                                          for k in (0, 1)]
    return {"case": case, "height": HEIGHT, "width": WIDTH, "classes": CLASSES, "stages": len(STAGE_STRIDES),
            "images": images, "without_s": round(base, 4), "with_s": round(full, 4), "ratio": round(full / base, 3),
            "added_pct": round(100 * (full / base - 1), 1), "cpu_without_s": round(cpu_base, 4),
            "cpu_with_s": round(cpu_full, 4), "cpu_ratio": round(cpu_full / cpu_base, 3),
            "threads": torch.get_num_threads(), "device": device, "load_avg_1min": round(os.getloadavg()[0], 2),
            "torch": torch.__version__}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5, help="timed images per case (median taken)")
    parser.add_argument("--cases", nargs="+", default=["smooth", "noise"], choices=["smooth", "noise"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, nargs="+", help="torch CPU threads, one set of rows each "
                        "(default: torch's)")
    parser.add_argument("--output", help="CSV path (default: results/benchmarks/boundary_<device type>.csv)")
    args = parser.parse_args(argv)
    rows = []
    for threads in args.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        for case in args.cases:
            row = measure(case, args.images, args.device)
            rows.append(row)
            print(f"{case:>6}, {threads} thread(s): {row['without_s']:.3f} s/image without, {row['with_s']:.3f} s with "
                  f"the boundary metrics: x{row['ratio']:.3f} (+{row['added_pct']:.1f}%); CPU time {row['cpu_without_s']:.3f} "
                  f"-> {row['cpu_with_s']:.3f} s, x{row['cpu_ratio']:.3f}; load {row['load_avg_1min']}",
                  flush=True)
    out = Path(args.output or ROOT / "results" / "benchmarks" / f"boundary_{torch.device(args.device).type}.csv")
    write_rows(out, rows, COLUMNS)
    return rows


if __name__ == "__main__":
    main()
