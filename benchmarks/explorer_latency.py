"""How long the NAM explorer takes to answer a click, on this machine's CPU.

The explorer computes every NAM weight of an image once (one forward pass for the weights, one
for the predictions); a click, a head or a stage change then only indexes them and redraws three
small pictures. This times both parts on a random image with the smoke model (random weights: the
timing does not depend on them) and writes results/benchmarks/explorer_cpu.csv.

    python benchmarks/explorer_latency.py                       # 256x256, smoke model
    python benchmarks/explorer_latency.py --size 512 --profile paper --threads 2
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from pna.configs import load_config  # noqa: E402
from pna.analysis.explorer import NAMExplorer  # noqa: E402
from pna.models import create_model  # noqa: E402
from pna.paths import results_dir  # noqa: E402
from table_file import write_rows  # noqa: E402  (benchmarks/table_file.py, beside this script)


def measure(size: int, profile: str, clicks: int, with_widget: bool) -> dict:
    cfg = load_config("voc/fcn_r50_os32_pna", profile)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # randomly initialised backbone
        model = create_model(cfg.model.name, 21, **cfg.model.overrides).eval()
    palette = [(17 * i % 256, 91 * i % 256, 53 * i % 256) for i in range(21)]
    images = [{"image": torch.randn(3, size, size)}]
    start = time.perf_counter()
    explorer = NAMExplorer(model, images, palette=palette)
    precompute = time.perf_counter() - start
    if with_widget:
        explorer.widget  # noqa: B018 - build it: an update then also encodes and sends the pictures
    rng = np.random.default_rng(0)
    click_times, switch_times = [], []
    for y, x in rng.integers(0, size, (clicks, 2)):
        start = time.perf_counter()
        explorer.click(x=int(x), y=int(y))
        click_times.append(time.perf_counter() - start)
    for stage in explorer.stages:
        for head in range(explorer.heads(stage)):
            start = time.perf_counter()
            explorer.update(stage=stage, head=head)
            switch_times.append(time.perf_counter() - start)
    return {"size": size, "profile": profile, "widget": with_widget, "precompute_s": round(precompute, 3),
            "click_median_ms": round(1000 * statistics.median(click_times), 1),
            "click_max_ms": round(1000 * max(click_times), 1),
            "stage_or_head_median_ms": round(1000 * statistics.median(switch_times), 1),
            "threads": torch.get_num_threads(), "load_avg_1min": round(os.getloadavg()[0], 2),
            "cpu": platform.processor() or platform.machine()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, nargs="+", default=[256])
    parser.add_argument("--profile", default="smoke", choices=["smoke", "paper"])
    parser.add_argument("--clicks", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the forward pass")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(size, args.profile, args.clicks, with_widget) for size in args.size for with_widget in (False, True)]
    for row in rows:
        print(row)
    out = results_dir() / "benchmarks" / f"explorer_cpu_{args.profile}.csv"
    write_rows(out, rows)


if __name__ == "__main__":
    main()
