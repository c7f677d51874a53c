"""Rehearse the paper profile: every paper row end to end, at the real sizes, on a tiny dataset.

``pna rehearse [--rows NAME ...] [--device cpu|cuda] [--papermill]`` (``make rehearse``).
For each paper config (``pna.configs.list_configs()``) it

1. writes a small dataset in the official on-disk format at the official image size
   (:mod:`pna.data.fixtures`: VOC JPEG + palette PNG with an SBD-style aug list, Cityscapes
   1024x2048 labelIds, COCO-Stuff ``.mat``, DeepGlobe 2448x2448 RGB masks, Trans10K masks);
2. builds the row's real model and trains it at the paper crop with batch 2 through the notebooks'
   code path (``pna.engine.train.train``): one iteration, stopped with its resume state written, then
   resumed from that checkpoint to iteration 2 (fp32 on CPU, AMP fp16 on CUDA);
3. evaluates the one test image exactly in the paper's test mode and size (the end of training);
4. on CPU, runs one bf16-autocast training step of the same model at 128x128, so every row's
   mixed-precision path runs (CPU bf16 is emulated and slow: small inputs only).

Each row runs in its own process (a failure or a memory peak stays with its row). The table goes
to stdout and ``results/rehearsal/<device>.csv`` (config, seconds per iteration, peak memory: CPU
RSS or CUDA max allocated, eval seconds, status, error). ``--papermill`` also runs one row per
dataset through its notebook with ``profile='paper'``.

No ImageNet weights are read (none can be downloaded here): backbones start from random init,
explicitly allowed (``model.allow_random_init=True``); the weight loaders have their own tests.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

from pna.paths import REPO_ROOT

# The row of each dataset that `make test` rehearses (cheapest refinement row), and the notebook
# that `--papermill` runs it through.
CI_ROWS = {"voc": "voc/fcn_r50_os32_pna", "cityscapes": "cityscapes/fpn_r52_pna",
           "cocostuff10k": "cocostuff10k/deeplabv3_r50_os16_pna", "deepglobe": "deepglobe/fpn_r52_pna",
           "trans10k": "trans10k/fpn_r52_pna"}
NOTEBOOKS = {"voc": ("01_voc_ablation.ipynb", "table1"), "cityscapes": ("03_cityscapes.ipynb", "table4"),
             "cocostuff10k": ("06_cocostuff10k.ipynb", "table7"), "deepglobe": ("04_deepglobe.ipynb", "table5"),
             "trans10k": ("05_trans10k.ipynb", "table6")}
COLUMNS = ["config", "device", "crop", "batch", "s_per_iter", "peak_mb", "eval_s", "eval_size", "amp_step_s",
           "resumed_at", "status", "error"]
AMP_SIZE = (128, 128)


def _peak_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kB


def rehearsal_config(name: str, root: Path, device: str, iters: int = 2, batch_size: int = 2):
    """The paper config of ``name`` on the fixture at ``root``: the paper's crops, test mode and
    sizes, ``iters`` iterations of batch ``batch_size``, no loader workers, random init allowed."""
    from pna.configs import load_config

    return load_config(name, "paper", {
        "data.root": str(root), "train.iters": iters, "train.batch_size": batch_size, "train.device": device,
        "train.workers": 0, "train.eval_interval": 0, "train.checkpoint_interval": 0, "train.log_interval": 1,
        "model.allow_random_init": True})


def amp_step(cfg, num_classes: int, device, size=AMP_SIZE) -> float:
    """One training step of the row's model under bf16 autocast (the CPU's mixed precision; on CUDA
    the rehearsed run itself trains with fp16 AMP): forward,
    the row's loss, backward, optimiser step; every gradient must be finite. Returns seconds."""
    import torch

    from pna.engine.build import build_model
    from pna.models import SegmentationLoss
    from pna.engine.optim import build_optimizer

    torch.manual_seed(0)
    model = build_model(cfg, num_classes, device).train()
    criterion = SegmentationLoss(**cfg.model.loss)
    optimizer = build_optimizer(model, cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.betas, cfg.optim.decay_rule)
    images = torch.randn(2, 3, *size, device=device)
    labels = torch.randint(0, num_classes, (2, *size), device=device)
    dtype = torch.bfloat16
    start = time.perf_counter()
    with torch.autocast(device.type, dtype=dtype):
        loss, _ = criterion(model(images), labels)
    loss.backward()
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    if not torch.isfinite(loss) or bad:
        raise FloatingPointError(f"{dtype} autocast step: loss {loss.item()}, non-finite gradients in {bad[:5]}")
    optimizer.step()
    return time.perf_counter() - start


def rehearse_row(name: str, device_name: str, workdir: Path) -> dict:
    """Steps 1-4 of the module docstring for one config; returns its line of the table."""
    from pna.engine import distributed as dist
    from pna.configs import ROWS
    from pna.data import info
    from pna.data.fixtures import write_fixture
    from pna.engine.train import train

    device = dist.init_from_env(device_name)
    dataset = ROWS[name].dataset
    line = {"config": name, "device": device_name, "status": "failed", "error": ""}
    try:
        root = write_fixture(dataset, workdir / "data", num_train=2, num_eval=1)
        cfg = rehearsal_config(name, root, device_name)
        line.update(crop="x".join(map(str, cfg.data.crop)), batch=cfg.train.batch_size)
        out = workdir / "run"
        first = train(cfg, out, results_dir=workdir / "results", progress=False, stop_after=1)
        assert not first.finished and (out / "last.pt").is_file(), "no resume state after the first iteration"
        result = train(cfg, out, results_dir=workdir / "results", progress=False)  # resumes from last.pt
        log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
        times = [e["time_s"] for e in log if e["type"] == "train"]
        evals = [e for e in log if e["type"] == "eval"]
        assert result.finished and evals, "the resumed run did not finish with an evaluation"
        line.update(s_per_iter=round(times[-1] / len(times), 2), resumed_at=first.record["iteration"],
                    eval_s=evals[-1]["seconds"], eval_size=_eval_size(cfg))
        if device.type == "cpu":
            line["amp_step_s"] = round(amp_step(cfg, info(cfg.data.dataset).num_classes, device), 2)
        line["status"] = "ok"
    except Exception as err:  # noqa: BLE001: the row's failure is the result
        line["error"] = f"{type(err).__name__}: {err}".replace("\n", " ")[:500]
        traceback.print_exc()
    line["peak_mb"] = round(_peak_mb(device))
    return line


def _eval_size(cfg) -> str:
    from pna.data.transforms import short_side_size
    from pna.data.fixtures import OFFICIAL_SIZES
    from pna.configs import ROWS

    h, w = OFFICIAL_SIZES[ROWS[cfg.name].dataset]
    if cfg.data.eval_short_side:
        h, w = short_side_size(h, w, cfg.data.eval_short_side, cfg.data.eval_max_size)
    return f"{h}x{w}"


def _run_child(name: str, device: str, timeout: float) -> dict:
    """Rehearse one row in a fresh process; its last stdout line is the JSON result."""
    with tempfile.TemporaryDirectory(prefix="pna-rehearse-") as tmp:
        command = [sys.executable, "-m", "pna", "rehearse", "--child", name, "--device", device, "--workdir", tmp]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PNA_RUNS_DIR": f"{tmp}/runs", "PNA_RESULTS_DIR": f"{tmp}/results"}
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
        except subprocess.TimeoutExpired:
            return {"config": name, "device": device, "status": "failed", "error": f"timed out after {timeout:.0f} s"}
    lines = [x for x in done.stdout.splitlines() if x.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"config": name, "device": device, "status": "failed", "error": f"exit {done.returncode}: {tail[0]}"}
    return json.loads(lines[-1])


def papermill_row(dataset: str, device: str, timeout: float) -> dict:
    """Run one row of ``dataset`` through its notebook with ``profile='paper'`` (2 iterations)."""
    notebook, table = NOTEBOOKS[dataset]
    row = CI_ROWS[dataset].split("/")[1]
    name = f"papermill {notebook} ({row})"
    with tempfile.TemporaryDirectory(prefix="pna-rehearse-nb-") as tmp:
        from pna.data.fixtures import write_fixture

        root = write_fixture(dataset, Path(tmp) / "data", num_train=2, num_eval=1)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PNA_RUNS_DIR": f"{tmp}/runs", "PNA_RESULTS_DIR": f"{tmp}/unused"}
        command = [sys.executable, "-m", "papermill", str(REPO_ROOT / "notebooks" / notebook), f"{tmp}/out.ipynb",
                   "--cwd", str(REPO_ROOT / "notebooks"), "--no-progress-bar", "-p", "profile", "paper",
                   "-p", "data_root", str(root), "-p", "device", device, "-p", "rows", row, "-p", "iters", "2",
                   "-p", "batch_size", "2", "-p", "workers", "0", "-p", "allow_random_init", "True",
                   "-p", "out_dir", f"{tmp}/results"]
        if notebook.startswith("01_"):
            command += ["-p", "window_rows", "[]"]
        start = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
            written = sorted(p.name for p in (Path(tmp) / "results" / table).glob("*.paper.json"))
            ok = done.returncode == 0 and written == [f"{row}.paper.json"]
            error = "" if ok else f"exit {done.returncode}, wrote {written}: {done.stderr.strip().splitlines()[-1:]}"
        except subprocess.TimeoutExpired:
            ok, error = False, f"timed out after {timeout:.0f} s"
    return {"config": name, "device": device, "status": "ok" if ok else "failed", "error": error,
            "s_per_iter": "", "eval_s": round(time.perf_counter() - start, 1)}


def write_table(lines: list[dict], path: Path, update: bool = False) -> None:
    """Write ``lines`` to ``path`` (atomically); with ``update``, keep the lines already there whose
    config is not among ``lines`` (rows rehearsed in an earlier, partial run)."""
    from pna.configs import list_configs

    if update and path.is_file():
        with open(path, newline="") as f:
            kept = [x for x in csv.DictReader(f) if x["config"] not in {line["config"] for line in lines}]
        order = {name: i for i, name in enumerate(list_configs())}
        lines = sorted(kept + lines, key=lambda x: (x["config"] not in order, order.get(x["config"], 0), x["config"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(lines)
    os.replace(tmp, path)


def rehearse(names: list[str], device: str = "cpu", papermill: bool = False, path: Path | None = None,
             timeout: float = 1800, update: bool = False) -> list[dict]:
    """Rehearse the configs ``names`` (each in its own process), then with ``papermill`` one row per
    dataset through its notebook; the table is written to ``path`` after every row (None: not written)."""
    from pna.configs import ROWS

    unknown = [n for n in names if n not in ROWS]
    if unknown:
        raise ValueError(f"unknown config(s) {unknown}; see pna.configs.list_configs()")
    lines: list[dict] = []

    def record(line: dict) -> None:  # written after every row: an interrupted run keeps what it did
        lines.append(line)
        if path is not None:
            write_table(lines, path, update=update)

    for i, name in enumerate(names, 1):
        line = _run_child(name, device, timeout)
        record(line)
        print(f"[{i}/{len(names)}] {name}: {line['status']} {line.get('s_per_iter', '')} s/iter, "
              f"peak {line.get('peak_mb', '')} MB, eval {line.get('eval_s', '')} s {line['error']}", flush=True)
    if papermill:
        for dataset in NOTEBOOKS:
            line = papermill_row(dataset, device, timeout)
            record(line)
            print(f"{line['config']}: {line['status']} ({line['eval_s']} s) {line['error']}", flush=True)
    return lines
