"""Params, GFLOPs (fvcore) and FPS of a registry model, of a paper table's rows, of every model (``pna cost``).

Conventions (those that give the paper's Table 1): params count every parameter, the auxiliary
head included (mmseg's convention: FCN-OS-32 is 49.5 M with the aux head, 47.1 M without);
GFLOPs are fvcore's count on the eval-mode model (the aux head is built but not run), one
multiply-add = one FLOP, with the neighbourhood-attention handles of ``pna.ops.flops`` registered;
element-wise ops (ReLU, GELU, softmax, additions) are not counted by fvcore and are listed under
``skipped_ops``. FPS: batch 1 forward passes under ``torch.no_grad`` after a warm-up.
"""
from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from fvcore.nn import FlopCountAnalysis

from pna.models import NeighbourhoodAggregation, create_model
from pna.ops.flops import fvcore_handles


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: torch.nn.Module, images: torch.Tensor, op_handles: bool = True) -> FlopCountAnalysis:
    """fvcore analysis of ``model(images)`` (``op_handles=False`` leaves the NA products uncounted).

    The NAMs run the "slots" op path while traced (its autograd Functions are what the handles of
    ``pna.ops.flops`` count; the CUDA flex path would be traced into other ops).
    """
    nams = [m for m in model.modules() if isinstance(m, NeighbourhoodAggregation)]
    impls = [nam.impl for nam in nams]
    for nam in nams:
        nam.impl = "slots"
    try:
        analysis = FlopCountAnalysis(model, images)
        if op_handles:
            analysis.set_op_handle(**fvcore_handles())
        analysis.unsupported_ops_warnings(False)
        analysis.uncalled_modules_warnings(False)
        analysis.total()  # trace now, while the NAMs use the slots path
    finally:
        for nam, impl in zip(nams, impls):
            nam.impl = impl
    return analysis


@torch.no_grad()
def measure_fps(model: torch.nn.Module, images: torch.Tensor, iters: int = 10, warmup: int = 3) -> float:
    """Forward passes per second (``images`` is one batch; cuda is synchronised around the timing)."""
    sync = torch.cuda.synchronize if images.is_cuda else (lambda: None)
    for _ in range(warmup):
        model(images)
    sync()
    start = time.perf_counter()
    for _ in range(iters):
        model(images)
    sync()
    return iters / (time.perf_counter() - start)


def profile_model(name: str, size: Sequence[int] = (512, 512), num_classes: int = 21, device: str = "cpu",
                  fps_iters: int = 10, warmup: int = 3, op_handles: bool = True, **overrides: Any) -> dict:
    """Params (M), GFLOPs and FPS of ``create_model(name, num_classes, **overrides)`` at ``size`` (H, W).

    ``fps_iters=0`` skips the timing (fps is then None).

    Example:
        >>> import warnings; warnings.simplefilter("ignore")
        >>> row = profile_model("fcn_r50_os32", (64, 64), 3, fps_iters=0, backbone="resnet18c", head_channels=16)
        >>> row["params"] > 0 and row["gflops"] > 0
        True
    """
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be (height, width) with positive entries, got {tuple(size)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' requested but torch.cuda.is_available() is False")
    model = create_model(name, num_classes, **overrides).to(device).eval()
    images = torch.randn(1, 3, *size, device=device)
    analysis = count_flops(model, images, op_handles)
    flops = analysis.total()
    by_operator = analysis.by_operator()
    na_flops = sum(by_operator.get(op.split("::", 1)[-1], 0) for op in fvcore_handles())  # fvcore drops "prim::"
    return {
        "model": name,
        "size": list(size),
        "num_classes": num_classes,
        "overrides": {k: v for k, v in overrides.items()},
        "params": count_params(model),
        "params_m": count_params(model) / 1e6,
        "gflops": flops / 1e9,
        "na_gflops": na_flops / 1e9,  # the neighbourhood attention products (q.k and attn.v)
        "gflops_by_operator": {op: n / 1e9 for op, n in sorted(analysis.by_operator().items())},
        "skipped_ops": dict(sorted(analysis.unsupported_ops().items())),
        "fps": measure_fps(model, images, fps_iters, warmup) if fps_iters > 0 else None,
        "device": torch.cuda.get_device_name(0) if device == "cuda" else f"cpu ({torch.get_num_threads()} threads)",
        "load_avg_1min": round(os.getloadavg()[0], 2),  # CPU FPS means little on a busy machine
    }


def profile_table(table: str, rows: Sequence[str] | None = None, size: Sequence[int] = (512, 512),
                  device: str = "cpu", fps_iters: int = 3, num_classes: int | None = None):
    """Params / GFLOPs / FPS of the paper-scale model of each row of a paper table, beside the
    paper's figures (``results/paper_numbers.csv``), as a pandas DataFrame.

    Rows default to those of ``table`` for which the paper prints a cost; ``num_classes`` defaults
    to the table's dataset (21 for VOC). ``pna cost --table table1`` writes it to
    ``results/cost/table1.csv``; :func:`load_cost_table` reads that file back.
    """
    import pandas as pd

    from pna.configs import PAPER_DATA, ROWS
    from pna.data import info
    from pna.analysis.paper_numbers import load_paper_numbers

    paper = load_paper_numbers()
    paper = paper[(paper["table"] == table) & paper["column"].isin(["params", "GFLOPs", "FPS"])]
    specs = {row.name: row for row in ROWS.values() if row.table == table}
    rows = list(rows) if rows is not None else [r for r in specs if r in set(paper["row"].dropna())]
    unknown = [r for r in rows if r not in specs]
    if unknown:
        raise ValueError(f"{table} has no rows {unknown}; its rows are {list(specs)}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    lines = []
    for name in rows:
        spec = specs[name]
        classes = num_classes or info(PAPER_DATA[spec.dataset]["dataset"]).num_classes
        measured = profile_model(spec.model, size, classes, device, fps_iters=fps_iters,
                                 warmup=min(3, fps_iters), **spec.overrides)
        theirs = paper[paper["row"] == name].set_index("column")["value"]
        line = {"model": name, "size": f"{size[0]}x{size[1]}", "num_classes": classes,
                "params_m": round(measured["params_m"], 3), "paper_params_m": theirs.get("params"),
                "gflops": round(measured["gflops"], 3),
                "gflops_without_na": round(measured["gflops"] - measured["na_gflops"], 3),
                "paper_gflops": theirs.get("GFLOPs"),
                "fps": None if measured["fps"] is None else round(measured["fps"], 3),
                "paper_fps_3090": theirs.get("FPS"), "device": measured["device"],
                "load_avg_1min": measured.get("load_avg_1min"),
                "skipped_ops": " ".join(f"{op}:{n}" for op, n in measured["skipped_ops"].items())}
        for ours, key in (("params_m", "paper_params_m"), ("gflops", "paper_gflops")):
            line[f"{ours.split('_')[0]}_diff_pct"] = (
                None if line[key] is None else round(100 * (line[ours] - line[key]) / line[key], 2))
        lines.append(line)
        print(f"{name}: {line['params_m']:.2f} M params (paper {line['paper_params_m']}), "
              f"{line['gflops']:.2f} GFLOPs (paper {line['paper_gflops']}), FPS {line['fps']} on {line['device']}",
              flush=True)
    return pd.DataFrame(lines)


def load_cost_table(table: str, root: str | Path | None = None):
    """The committed cost measurements of a table (``<results>/cost/<table>.csv``, where ``pna cost``
    writes them), falling back to the repository's copy when ``root`` (e.g. a scratch results folder)
    has none."""
    import pandas as pd

    from pna.paths import REPO_ROOT, results_dir

    for folder in (Path(root or results_dir()), REPO_ROOT / "results"):
        path = folder / "cost" / f"{table}.csv"
        if path.is_file():
            return pd.read_csv(path)
    raise FileNotFoundError(f"no cost/{table}.csv under {root or results_dir()} or {REPO_ROOT / 'results'}; "
                            f"run `pna cost --table {table}`")


ALL_MODELS_COLUMNS = ["model", "paper_rows", "backbone", "output_stride", "head", "refine", "aux", "size",
                      "num_classes", "params_m", "gflops", "device", "skipped_ops", "seconds"]


def _paper_rows_of(model: str) -> str:
    """The printed paper rows (table: method (backbone)) that a registry model stands for."""
    from pna.configs import ROWS

    return "; ".join(sorted({f"{r.table}: {r.method}" + (f" ({r.printed_backbone})" if r.printed_backbone else "")
                             for r in ROWS.values() if r.model == model and r.method}))


def profile_all_models(names: Sequence[str], out: Path, size: Sequence[int] = (512, 512), device: str = "cpu",
                       resume: bool = False) -> list[dict]:
    """Params and GFLOPs (21 classes, eval mode) of each registry model in ``names``, written to
    ``out`` (atomically) after every model; ``resume`` keeps the models already there (those no
    longer registered are dropped). FPS is left out: CPU timings say little."""
    import warnings

    from pna.engine.checkpoint import atomic_write_text
    from pna.models import MODELS, list_models

    done: dict[str, dict] = {}
    if resume and out.exists():
        with out.open(newline="") as f:
            done = {r["model"]: r for r in csv.DictReader(f) if r["model"] in set(list_models())}
    warnings.filterwarnings("ignore", message=".*RANDOMLY INITIALISED.*")  # weights do not change counts
    for name in names:
        if name in done:
            continue
        start = time.perf_counter()
        row, spec = profile_model(name, size, 21, device, fps_iters=0), MODELS[name]
        done[name] = {
            "model": name, "paper_rows": _paper_rows_of(name), "backbone": spec.backbone,
            "output_stride": spec.output_stride, "head": spec.head, "refine": spec.refine or "", "aux": spec.aux,
            "size": f"{size[0]}x{size[1]}", "num_classes": 21, "params_m": round(row["params_m"], 3),
            "gflops": round(row["gflops"], 3), "device": row["device"],
            "skipped_ops": " ".join(f"{op}:{n}" for op, n in row["skipped_ops"].items()),
            "seconds": round(time.perf_counter() - start, 1)}
        print(f"{name:32s} params {done[name]['params_m']:8.2f} M  GFLOPs {done[name]['gflops']:9.2f}", flush=True)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=ALL_MODELS_COLUMNS)
        writer.writeheader()
        writer.writerows(done[n] for n in sorted(done))
        atomic_write_text(buffer.getvalue(), out)
    return [done[n] for n in sorted(done)]
