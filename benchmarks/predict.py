"""How fast `pna predict` is: images per second, and the share spent reading and writing.

For each model profile (smoke, paper: the Table 1 row voc/fcn_r50_os32_pna, random weights: the
timing does not depend on them), image size (512x512, 1024x2048, run at that size: --size original)
and test mode (whole, slide with the row's windows: smoke 128 every 96, paper 512 every 341), it
writes N JPEGs and runs the batch runner (`pna.inference.predict_files`, loader workers reading while
the model runs) after one warm-up image. Reading is timed inside the workers (it overlaps the model
when workers > 0), predicting and writing in the main process; the shares are of their sum.

    python benchmarks/predict.py                          # -> results/benchmarks/predict_cpu.csv
    python benchmarks/predict.py --device cuda --images 8 # -> results/benchmarks/predict_cuda.csv
    python benchmarks/predict.py --quick --out /tmp/p.csv # the code path on tiny images, smoke model (a dry run)

Timings from a machine others are using are not figures to keep: run it on a quiet machine; each
row records the 1-minute load average.
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from pna.configs import load_config  # noqa: E402
from pna.data import info  # noqa: E402
from pna.inference import PredictOptions, load_model, predict_files  # noqa: E402
from pna.models import create_model  # noqa: E402
from pna.paths import results_dir  # noqa: E402
from table_file import write_rows  # noqa: E402  (benchmarks/table_file.py, beside this script)

ROW = "voc/fcn_r50_os32_pna"
SIZES = {"512x512": (512, 512), "1024x2048": (1024, 2048)}
QUICK_SIZES = {"64x64": (64, 64), "96x160": (96, 160)}


def checkpoint(profile: str, folder: Path) -> Path:
    """The row's model of ``profile`` (random weights) as a checkpoint in `pna train`'s format."""
    cfg = load_config(ROW, profile)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # randomly initialised backbone
        net = create_model(cfg.model.name, info(cfg.data.dataset).num_classes, **{**cfg.model.overrides, "pretrained": None})
    path = folder / f"{profile}.pt"
    torch.save({"model": net.state_dict(), "config": cfg.to_dict()}, path)
    return path


def photos(folder: Path, size: tuple[int, int], count: int) -> Path:
    """``count`` JPEGs of ``size`` (H, W): smooth colour fields with noise, compressed like photos."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    h, w = size
    for k in range(count):
        yy, xx = np.mgrid[:h, :w]
        base = np.stack([(xx * 255 // max(w - 1, 1)), (yy * 255 // max(h - 1, 1)), np.full_like(xx, 40 * k)], -1)
        noisy = np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"img{k:03d}.jpg", quality=90)
    return folder


def measure(model, folder: Path, out: Path, mode: str, workers: int, batch: int) -> dict:
    options = PredictOptions(mode=mode, size="original", workers=workers, batch_size=batch, progress=False)
    warm = folder.parent / f"{folder.name}_warm"
    warm.mkdir(exist_ok=True)
    first = sorted(folder.iterdir())[0]
    (warm / first.name).write_bytes(first.read_bytes())
    predict_files(model, [str(warm)], out / "warm", options)
    start = time.perf_counter()
    summary = predict_files(model, [str(folder)], out / "timed", options)
    wall = time.perf_counter() - start
    s = summary["seconds"]
    parts = s.get("read", 0.0) + s.get("predict", 0.0) + s.get("write", 0.0)
    return {"images": summary["written"], "wall_s": round(wall, 3), "images_per_s": round(summary["written"] / wall, 3),
            "read_s": round(s.get("read", 0.0), 3), "predict_s": round(s.get("predict", 0.0), 3),
            "write_s": round(s.get("write", 0.0), 3), "read_share": round(s.get("read", 0.0) / parts, 4),
            "write_share": round(s.get("write", 0.0) / parts, 4), "failed": summary["failed"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--profiles", nargs="+", choices=["smoke", "paper"], help="default: both (--quick: smoke)")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), help=f"of {list(SIZES)}")
    parser.add_argument("--modes", nargs="+", default=["whole", "slide"], choices=["whole", "slide"])
    parser.add_argument("--images", type=int, default=4, help="timed images per case")
    parser.add_argument("--workers", type=int, default=2, help="image-reading processes")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="tiny images, 1 per case, the smoke model: checks the code path")
    parser.add_argument("--out", type=Path, help="CSV (default results/benchmarks/predict_<device>.csv)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = QUICK_SIZES if args.quick else {name: SIZES[name] for name in args.sizes}
    profiles = args.profiles or (["smoke"] if args.quick else ["smoke", "paper"])
    count = 1 if args.quick else args.images
    out_csv = args.out or results_dir() / "benchmarks" / f"predict_{args.device}{'_quick' if args.quick else ''}.csv"
    gpu = torch.cuda.get_device_name() if args.device == "cuda" else ""
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        for profile in profiles:
            model = load_model(checkpoint(profile, scratch), device=args.device)
            for size_name, size in sizes.items():
                folder = photos(scratch / size_name, size, count)
                for mode in args.modes:
                    out = scratch / f"out_{profile}_{size_name}_{mode}"
                    row = {"device": args.device, "gpu": gpu, "profile": profile, "row": ROW, "size": size_name,
                           "mode": mode, "window": "x".join(map(str, model.config.eval.crop)) if mode == "slide" else "",
                           **measure(model, folder, out, mode, args.workers, args.batch_size),
                           "workers": args.workers, "batch": args.batch_size, "threads": torch.get_num_threads(),
                           "load_avg_1min": round(os.getloadavg()[0], 2), "torch": torch.__version__,
                           "cpu": platform.processor() or platform.machine()}
                    print(row, flush=True)
                    rows.append(row)
    write_rows(out_csv, rows)


if __name__ == "__main__":
    main()
