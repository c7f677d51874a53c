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
Writes ``results/benchmarks/boundary_<device>.csv``.

    python benchmarks/boundary.py                   # 5 images per case, CPU
    python benchmarks/boundary.py --images 3 --cases smooth
"""
from __future__ import annotations

import argparse
import csv
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

HEIGHT, WIDTH, CLASSES = 1024, 2048, 19  # Cityscapes
STAGE_STRIDES = {"P0": 32, "P1": 32, "P2": 16, "P3": 8, "P4": 4}  # PNA's output strides
LABEL_STRIDE = 16
IGNORED_CLASS = CLASSES - 1  # one class of the random label becomes "ignored" (about 1 pixel in 19)
COLUMNS = ["case", "height", "width", "classes", "stages", "images", "without_s", "with_s", "ratio",
           "added_pct", "threads", "device", "load_avg_1min", "torch"]


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


def timed(model, dataset, boundary: bool, device: str) -> float:
    settings = {} if boundary else {"boundary": None}
    start = time.perf_counter()
    evaluate_model(model, dataset, device, **settings)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start


def measure(case: str, images: int, device: str) -> dict:
    without, with_ = [], []
    for i in range(images + 1):  # the first image warms up allocator and caches, and is not counted
        model, dataset = make_case(case, seed=i)
        model.logits = {k: v.to(device) for k, v in model.logits.items()}
        order = (False, True) if i % 2 else (True, False)
        times = {flag: timed(model, dataset, flag, device) for flag in order}
        if i:
            without.append(times[False])
            with_.append(times[True])
    base, full = statistics.median(without), statistics.median(with_)
    return {"case": case, "height": HEIGHT, "width": WIDTH, "classes": CLASSES, "stages": len(STAGE_STRIDES),
            "images": images, "without_s": round(base, 4), "with_s": round(full, 4), "ratio": round(full / base, 3),
            "added_pct": round(100 * (full / base - 1), 1), "threads": torch.get_num_threads(), "device": device,
            "load_avg_1min": round(os.getloadavg()[0], 2), "torch": torch.__version__}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5, help="timed images per case (median taken)")
    parser.add_argument("--cases", nargs="+", default=["smooth", "noise"], choices=["smooth", "noise"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--output", help="CSV path (default: results/benchmarks/boundary_<device type>.csv)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for case in args.cases:
        row = measure(case, args.images, args.device)
        rows.append(row)
        print(f"{case:>6}: {row['without_s']:.3f} s/image without, {row['with_s']:.3f} s with the boundary "
              f"metrics: x{row['ratio']:.3f} (+{row['added_pct']:.1f}%), load {row['load_avg_1min']}", flush=True)
    out = Path(args.output or ROOT / "results" / "benchmarks" / f"boundary_{torch.device(args.device).type}.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {out}")
    return rows


if __name__ == "__main__":
    main()
