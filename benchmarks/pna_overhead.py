"""What the refinement costs on this CPU beside what its FLOPs say (issue 33's four measured goals).

1. Inference: forward time of FCN-OS-32 + PNA over FCN-OS-32 at 512 x 512 (batch 1, eval, no
   grad); the FLOP ratio is 1.47 (42.4 / 28.8 GFLOPs), the paper's GPU FPS ratio 1 / 0.62 = 1.61.
2. Neighbourhood attention forward + backward (``na2d``, automatic path) over one square matmul of
   the same useful FLOPs (6 window products of 2 * B * heads * H * W * L^2 * 32), at the four stage
   shapes of a 512 crop (B = 2, L = 9, head dim 32), both timed in this process.
3. Time per megapixel of both models from 256 x 256 to 1024 x 2048 (``--plot`` draws it).
4. The smoke training step (forward, losses, backward, AdamW on prefetched batches; data loading
   excluded): images per second of ``voc/fcn_r50_os32`` over ``voc/fcn_r50_os32_pna`` (smoke profile).

The two sides of every ratio are timed alternately in one process, each keeping its best of
``--repeats`` (other processes only ever slow a timing down); the 1-minute load average before and
after each goal is written beside its figures. Rows go to ``results/benchmarks/pna_overhead_cpu.csv``
under ``--label``; run it again on another checkout (``PYTHONPATH=...``) with ``--append`` to set
two versions side by side. No figure here is asserted by a test.

    python benchmarks/pna_overhead.py --label after                          # all four goals
    PYTHONPATH=../perf-base python benchmarks/pna_overhead.py --label before --append --goals 1 2
    python benchmarks/pna_overhead.py --plot                                 # results/figures/cost_vs_size.png
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

import pna  # noqa: E402
from pna.models import create_model  # noqa: E402
from pna.ops import na2d  # noqa: E402
from table_file import code_version, read_rows, write_rows  # noqa: E402  (benchmarks/table_file.py, beside this script)

ROOT = Path(__file__).resolve().parents[1]
CSV = ROOT / "results" / "benchmarks" / "pna_overhead_cpu.csv"
FIGURE = ROOT / "results" / "figures" / "cost_vs_size.png"
MODELS = ("fcn_r50_os32", "fcn_r50_os32_pna")
CONFIGS = ("voc/fcn_r50_os32", "voc/fcn_r50_os32_pna")
STAGES = {"res2": (3, 128), "res3": (6, 64), "res4": (12, 32), "res5": (24, 16)}  # heads, H = W at a 512 crop
SIZES = ((256, 256), (512, 512), (768, 768), (1024, 1024), (1024, 2048))
TARGETS = {1: 1.6, 2: 6.0, 4: 1.6}  # issue 33
COLUMNS = ["label", "goal", "case", "unit", "baseline_name", "baseline", "subject_name", "subject", "ratio", "target",
           "load_avg_1min_before", "load_avg_1min_after", "threads", "torch", "code"]


def alternate(runs: dict, repeats: int) -> dict[str, float]:
    """Best wall seconds of each callable, the callables taking turns ``repeats`` times (after a warm-up)."""
    for fn in runs.values():
        fn()
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def goal_inference(repeats: int) -> list[dict]:
    images = torch.randn(1, 3, 512, 512)
    models = {name: create_model(name, 21).eval() for name in MODELS}
    with torch.no_grad():
        best = alternate({name: (lambda m=m: m(images)) for name, m in models.items()}, repeats)
    return [_row(1, "512x512 batch 1", "ms per image", MODELS[0], 1e3 * best[MODELS[0]], MODELS[1], 1e3 * best[MODELS[1]])]


def _na_inputs(heads: int, size: int, batch: int = 2, dim: int = 32, kernel_size: int = 9):
    q, k, v = (torch.randn(batch, heads, size, size, dim).requires_grad_() for _ in range(3))
    rpb = (0.02 * torch.randn(heads, 2 * kernel_size - 1, 2 * kernel_size - 1)).requires_grad_()
    return (q, k, v, rpb), torch.randn(batch, heads, size, size, dim)


def goal_attention(repeats: int) -> list[dict]:
    rows = []
    for stage, (heads, size) in STAGES.items():
        inputs, seed = _na_inputs(heads, size)
        flops = 6 * 2 * 2 * heads * size * size * 81 * 32
        n = round((flops / 2) ** (1 / 3))
        a, b = torch.randn(n, n), torch.randn(n, n)

        def attention():
            na2d(*inputs, 9).backward(seed)
            for t in inputs:
                t.grad = None

        best = alternate({"matmul": lambda: a @ b, "na2d": attention}, repeats)
        matmul_ms = 1e3 * best["matmul"] * flops / (2 * n ** 3)
        rows.append(_row(2, f"{stage} {size}x{size} B=2 heads={heads} L=9", "ms forward+backward",
                         "equal-FLOP matmul", matmul_ms, f"na2d {_path(inputs[0])}", 1e3 * best["na2d"]))
    return rows


def _path(q: torch.Tensor) -> str:
    from pna.ops.na2d import IMPLS, _resolve

    return _resolve("auto", q, IMPLS, 9)


def goal_sizes(repeats: int) -> list[dict]:
    models = {name: create_model(name, 21).eval() for name in MODELS}
    rows = []
    for height, width in SIZES:
        images = torch.randn(1, 3, height, width)
        with torch.no_grad():
            best = alternate({name: (lambda m=m: m(images)) for name, m in models.items()}, repeats)
        megapixels = height * width / 1e6
        rows.append(_row(3, f"{height}x{width}", "ms per megapixel", MODELS[0], 1e3 * best[MODELS[0]] / megapixels,
                         MODELS[1], 1e3 * best[MODELS[1]] / megapixels))
    return rows


def goal_training(repeats: int, steps: int = 4) -> list[dict]:
    from pna.configs import load_config
    from pna.engine.loader import train_batches
    from pna.engine.rundir import RunDir
    from pna.engine.train import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        trainers, batches = {}, {}
        for name in CONFIGS:
            cfg = load_config(name, "smoke", ["train.device=cpu"])
            trainers[name] = Trainer(cfg, RunDir(Path(tmp) / name.replace("/", "_")), torch.device("cpu"),
                                     resume=False, progress=False)
            source = train_batches(trainers[name].train_set, cfg.train.batch_size, cfg.train.seed)
            batches[name] = [next(source) for _ in range(steps)]
        for name in CONFIGS:  # warm-up beyond alternate()'s one call: the first steps allocate
            for batch in batches[name][:2]:
                trainers[name].train_step(batch, False)

        def run(name):
            for batch in batches[name]:
                trainers[name].train_step(batch, False)

        best = alternate({name: (lambda n=name: run(n)) for name in CONFIGS}, repeats)
        per_step = {name: best[name] / steps for name in CONFIGS}
        batch_size, crop = cfg.train.batch_size, cfg.data.crop
    ips = {name: batch_size / per_step[name] for name in CONFIGS}
    row = _row(4, f"smoke step batch {batch_size} of {crop[0]}x{crop[1]}", "images per s", CONFIGS[0], ips[CONFIGS[0]],
               CONFIGS[1], ips[CONFIGS[1]])
    row["ratio"] = round(ips[CONFIGS[0]] / ips[CONFIGS[1]], 3)  # a time ratio: FCN's rate over PNA's
    return [row]


def _row(goal: int, case: str, unit: str, baseline_name: str, baseline: float, subject_name: str, subject: float) -> dict:
    return {"goal": goal, "case": case, "unit": unit, "baseline_name": baseline_name, "baseline": round(baseline, 2),
            "subject_name": subject_name, "subject": round(subject, 2), "ratio": round(subject / baseline, 3),
            "target": TARGETS.get(goal, "")}


def _code() -> str:
    return f"{code_version()} ({Path(pna.__file__).parents[1].name})"  # the checkout's folder: main or a baseline


def measure(goals: list[int], repeats: int, label: str) -> list[dict]:
    runners = {1: goal_inference, 2: goal_attention, 3: goal_sizes, 4: goal_training}
    rows = []
    for goal in goals:
        before = os.getloadavg()[0]
        new = runners[goal](max(1, repeats - 1) if goal == 3 else repeats)
        for row in new:
            row |= {"label": label, "load_avg_1min_before": round(before, 2), "load_avg_1min_after": round(os.getloadavg()[0], 2),
                    "threads": torch.get_num_threads(), "torch": torch.__version__, "code": _code()}
            print(f"goal {goal} {row['case']:36s} {row['baseline_name']} {row['baseline']} | {row['subject_name']} "
                  f"{row['subject']} {row['unit']}  ratio {row['ratio']}  (load {row['load_avg_1min_before']}->"
                  f"{row['load_avg_1min_after']})", flush=True)
        rows += new
    return rows


def write(rows: list[dict], out: Path, append: bool) -> None:
    """``append``: keep the CSV's rows except those this run measured again (same label and goal)."""
    measured = {(r["label"], str(r["goal"])) for r in rows}
    kept = [r for r in read_rows(out) if (r["label"], r["goal"]) not in measured] if append else ()
    write_rows(out, rows, COLUMNS, kept=kept)


def plot(table: Path, figure: Path) -> None:
    """Milliseconds per megapixel against image size, per model and label (goal 3 rows of the CSV)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in read_rows(table) if r["goal"] == "3"]
    fig, ax = plt.subplots(figsize=(7, 4))
    for label in dict.fromkeys(r["label"] for r in rows):
        mine = [r for r in rows if r["label"] == label]
        sizes = [r["case"] for r in mine]
        load = max(float(r["load_avg_1min_after"]) for r in mine)
        for key, style in (("baseline", "--"), ("subject", "-")):
            ax.plot(sizes, [float(r[key]) for r in mine], style, marker="o",
                    label=f"{mine[0][key + '_name']} ({label}, load <= {load:.1f})")
    ax.set_xlabel("image size (H x W)")
    ax.set_ylabel("forward ms per megapixel (CPU)")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Cost per pixel, batch 1, {rows[0]['threads'] if rows else '?'} threads")
    ax.legend(fontsize=7)
    fig.tight_layout()
    figure.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure, dpi=120)
    print(f"wrote {figure}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goals", type=int, nargs="+", default=[1, 2, 3, 4], choices=[1, 2, 3, 4])
    parser.add_argument("--repeats", type=int, default=3, help="timings per side; the best is kept")
    parser.add_argument("--label", default="after")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=CSV)
    parser.add_argument("--append", action="store_true", help="keep the rows already in the CSV (but those of this label and goals)")
    parser.add_argument("--plot", action="store_true", help="only draw the goal-3 rows of --out")
    parser.add_argument("--figure", type=Path, default=FIGURE)
    args = parser.parse_args()
    if args.plot:
        plot(args.out, args.figure)
        return
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")  # randomly initialised backbones
    write(measure(args.goals, args.repeats, args.label), args.out, args.append)


if __name__ == "__main__":
    main()
