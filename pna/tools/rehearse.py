"""Rehearse the paper profile: every paper row end to end, at the real sizes, on a tiny dataset.

``pna rehearse [--rows NAME ...] [--device cpu|cuda] [--papermill]`` (``make rehearse``).
For each paper config (``pna.configs.list_configs()``) it

1. writes a small dataset in the official on-disk format at the official image size
   (:mod:`pna.data.fixtures`: VOC JPEG + palette PNG with an SBD-style aug list, Cityscapes
   1024x2048 labelIds, COCO-Stuff ``.mat``, DeepGlobe 2448x2448 RGB masks, Trans10K masks);
2. builds the row's real model and trains it at the paper crop through the notebooks' code path
   (``pna.engine.train.train``): ``iters`` iterations (default 2) of batch 2 (``--batch authors``:
   the per-GPU batch of the row's authors' setting), stopped after the first with its resume state
   written, then resumed from that checkpoint for the others (fp32 on CPU, AMP fp16 on CUDA);
3. evaluates the one test image exactly in the paper's test mode and size (the end of training);
4. on CPU, runs one bf16-autocast training step of the same model at 128x128, so every row's
   mixed-precision path runs (CPU bf16 is emulated and slow: small inputs only).

What the table (``results/rehearsal/<device>.csv``, :data:`COLUMNS`) measures:

- ``s_per_iter``: the mean time of the iterations after the first ``warmup`` (default 0: all),
  from the training log's cumulative ``time_s`` (:func:`steady_seconds`). Each iteration ends
  with the loss's ``.item()``, which waits for the GPU, so CUDA times are synchronised. With
  ``warmup`` 2 the first iteration (cold) and the first after the resume (model rebuilt, loader
  restarted) are left out. Data loading is included: ``--workers`` loader processes load ahead
  (the fixture then has ``batch * iters`` images, so no epoch ends within a run); with 0 it
  happens in the training process, and on CUDA ``data_s`` is what one batch takes there.
- ``peak_mb``: the larger of two peaks, each counted from a reset: (1) the model build, the first
  iteration and the resume state's save; (2) the resumed run: model rebuilt, checkpoint loaded
  (with the optimiser's state), the other iterations, the paper-mode evaluation of the test image
  (and on CPU the bf16 step). CUDA: ``torch.cuda.max_memory_allocated`` (tensors) and
  ``reserved_mb`` (``max_memory_reserved``: what the caching allocator held); the CUDA context
  is in neither. CPU: the resident high-water mark (VmHWM).
- ``status``: ok, ``oom`` (CUDA out of memory: ``asked_mb`` is the allocation that failed,
  ``peak_mb`` what was allocated before it) or failed (``error``).
- ``eval_s``: the end-of-training evaluation of the one test image (the model's first
  evaluation: first-call costs such as compiling the flex kernels for inference are included).
- ``row_s``: the whole row in its process (fixture, two model builds, training, checkpoint,
  evaluation, data timing; not the process start).

Each row runs in its own process (a failure or a memory peak stays with its row); with
``--same-process`` the rows run one after another in one child (peaks reset and memory freed
between rows, compiled kernels and fixtures shared; a row that crashes the child is reported
failed and a new child continues after it), which saves the start-up per row on a GPU.
``--papermill`` also runs one row per dataset through its notebook with ``profile='paper'``.
Which rows fit which GPU, from ``cuda.csv``: :mod:`pna.analysis.card_fit` (``pna plan --measured``).

No ImageNet weights are read (none can be downloaded here): backbones start from random init,
explicitly allowed (``model.allow_random_init=True``); the weight loaders have their own tests.
"""
from __future__ import annotations

import csv
import gc
import io
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

from pna.engine.checkpoint import atomic_write_text
from pna.engine.watch import read_run_log
from pna.tools.measure import PeakMemory, gpu_info, oom_asked_mb, steady_seconds
from pna.tools.rehearse_notebooks import CI_ROWS, NOTEBOOKS, papermill_row  # noqa: F401 (CI_ROWS: the CLI's and tests' name)
from pna.tools.rehearse_refiners import dataset_of, densecrf_line, is_refiner, per_gpu_batch

COLUMNS = ["config", "device", "gpu", "gpu_total_mb", "crop", "batch", "iters", "warmup", "workers", "s_per_iter",
           "data_s", "peak_mb", "reserved_mb", "asked_mb", "eval_s", "eval_size", "amp_step_s", "resumed_at",
           "row_s", "status", "error"]
AMP_SIZE = (128, 128)
DATA_BATCHES = 2  # batches timed for data_s: the loader's first batch is no slower than the next (no workers)
# One child process compiles the flex kernel for every window size and mode (train / inference) of
# the rows it runs; torch's default limit (8 variants) would make later rows fall back to the
# unfused eager kernel, which materialises every score (memory and time no longer the row's own).
SAME_PROCESS_RECOMPILE_LIMIT = 64


def authors_batch(name: str) -> int:
    """The per-GPU batch of the authors' setting that row ``name`` trains with (a refiner: its recipe's)."""
    return per_gpu_batch(name)


def rehearsal_config(name: str, root: Path, device: str, iters: int = 2, batch_size: int = 2, workers: int = 0):
    """The paper config of ``name`` on the fixture at ``root``: the paper's crops, test mode and
    sizes, ``iters`` iterations of batch ``batch_size``, ``workers`` loader processes, random init allowed."""
    from pna.configs import load_config

    return load_config(name, "paper", {
        "data.root": str(root), "train.iters": iters, "train.batch_size": batch_size, "train.device": device,
        "train.workers": workers, "train.eval_interval": 0, "train.checkpoint_interval": 0, "train.log_interval": 1,
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
    o = cfg.optim
    optimizer = build_optimizer(model, o.lr, o.weight_decay, o.betas, o.decay_rule, o.optimizer, o.momentum)
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


def data_seconds(cfg, batches: int = DATA_BATCHES) -> float:
    """Mean seconds to load one training batch of ``cfg`` in this process (what each iteration
    spends on data when the loader has no workers): the row's files, transform and batch size."""
    from pna.engine.build import build_train_set
    from pna.engine.loader import train_batches

    stream = train_batches(build_train_set(cfg), cfg.train.batch_size, cfg.train.seed)
    start = time.perf_counter()
    for _ in range(batches):
        next(stream)
    return (time.perf_counter() - start) / batches


_FIXTURES: dict[tuple[str, int], Path] = {}  # rows of one child process share their dataset


def _fixture(dataset: str, num_train: int, folder: Path) -> Path:
    from pna.data.fixtures import write_fixture

    key = (dataset, num_train)
    if key not in _FIXTURES or not _FIXTURES[key].is_dir():
        _FIXTURES[key] = write_fixture(dataset, folder / f"{dataset}-{num_train}", num_train=num_train, num_eval=1)
    return _FIXTURES[key]


def rehearse_row(name: str, device_name: str, workdir: Path, batch: int | str = 2, iters: int = 2,
                 warmup: int = 0, workers: int = 0, data_dir: Path | None = None) -> dict:
    """Steps 1-4 of the module docstring for one config (``batch``: a number or ``"authors"``; the
    fixture goes to ``data_dir``, default ``workdir/data``); returns its line of the table."""
    from pna.engine import distributed as dist
    from pna.data import info
    from pna.engine.train import train

    device = dist.init_from_env(device_name)
    batch_size = authors_batch(name) if batch == "authors" else int(batch)
    line = {"config": name, "device": device_name, **gpu_info(device), "batch": batch_size, "iters": iters,
            "warmup": warmup, "workers": workers, "status": "failed", "error": ""}
    meter, peaks, phase, start = PeakMemory(device), [], "data", time.perf_counter()
    try:
        # one epoch covers every iteration: a loader (and its workers) starts once per run
        root = _fixture(dataset_of(name), batch_size * (iters if workers else 1),
                        data_dir or workdir / "data")
        cfg = rehearsal_config(name, root, device_name, iters, batch_size, workers)
        line.update(crop="x".join(map(str, cfg.data.crop)))
        out, phase = workdir / "run", "training"
        meter.reset()
        first = train(cfg, out, results_dir=workdir / "results", progress=False, stop_after=1)
        assert not first.finished and (out / "last.pt").is_file(), "no resume state after the first iteration"
        del first
        peaks.append(meter.read())
        phase = "resumed run and evaluation"
        meter.reset()
        result = train(cfg, out, results_dir=workdir / "results", progress=False)  # resumes from last.pt
        log = read_run_log(out / "log.jsonl")
        evals = [e for e in log if e["type"] == "eval"]
        assert result.finished and evals, "the resumed run did not finish with an evaluation"
        line.update(s_per_iter=round(steady_seconds(log, warmup), 3), resumed_at=1,
                    eval_s=evals[-1]["seconds"], eval_size=_eval_size(cfg))
        if not workers and device.type == "cuda":  # on CPU the step dwarfs the loading
            phase = "data loading"
            line["data_s"] = round(data_seconds(cfg), 3)
        if device.type == "cpu":
            phase = "bf16 step"
            line["amp_step_s"] = round(amp_step(cfg, info(cfg.data.dataset).num_classes, device), 2)
        line["status"] = "ok"
    except Exception as err:  # noqa: BLE001: the row's failure is the result
        asked = oom_asked_mb(err)
        if asked is not None:
            line.update(status="oom", asked_mb=round(asked) if asked == asked else "")  # nan: size not given
        line["error"] = f"{phase}: {type(err).__name__}: {err}".replace("\n", " ")[:500]
        line["traceback"] = traceback.format_exc()[-3000:]  # printed by the parent, not written to the table
        traceback.print_exc()
    peaks.append(meter.read())  # the phase running when the row ended
    line["peak_mb"] = round(max(p for p, _ in peaks))
    line["row_s"] = round(time.perf_counter() - start, 1)
    if device.type == "cuda":
        line["reserved_mb"] = round(max(r for _, r in peaks))
    return line


def _eval_size(cfg) -> str:
    from pna.data.transforms import short_side_size
    from pna.data.fixtures import OFFICIAL_SIZES

    h, w = OFFICIAL_SIZES[dataset_of(cfg.name)]
    if cfg.data.eval_short_side:
        h, w = short_side_size(h, w, cfg.data.eval_short_side, cfg.data.eval_max_size)
    return f"{h}x{w}"


def rehearse_here(names: list[str], device: str, workdir: Path, **options) -> None:
    """The child's side (``pna rehearse --child NAME ...``): rehearse ``names`` one after another in
    this process, printing each row's JSON line when it ends; every row's run folder is removed after
    it and memory freed before the next (the fixtures of one dataset and batch are shared)."""
    if len(names) > 1:
        import torch._dynamo

        torch._dynamo.config.cache_size_limit = SAME_PROCESS_RECOMPILE_LIMIT  # recompile_limit since torch 2.6
    for name in names:
        with tempfile.TemporaryDirectory(prefix="row-", dir=workdir) as rundir:
            line = rehearse_row(name, device, Path(rundir), data_dir=workdir / "data", **options)
        _release(device)
        print(json.dumps(line), flush=True)


def _release(device: str) -> None:
    """Free what one row left behind: its model and optimiser (garbage), the CUDA cache, the flex
    block masks cached per map size."""
    gc.collect()
    if device.startswith("cuda"):
        import torch

        from pna.ops.na2d_flex import _flex_plan

        _flex_plan.cache_clear()
        torch.cuda.empty_cache()


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
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(lines)
    atomic_write_text(text.getvalue(), path)


def rehearse(names: list[str], device: str = "cpu", papermill: bool = False, path: Path | None = None,
             timeout: float = 1800, update: bool = False, batch: int | str = 2, iters: int = 2, warmup: int = 0,
             workers: int = 0, same_process: bool = False) -> list[dict]:
    """Rehearse the configs ``names`` (each in its own process; ``same_process``: all in one child,
    :mod:`pna.tools.children`), then with ``papermill`` one row per dataset through its notebook;
    the table is written to ``path`` after every row (None: not written). ``timeout``: seconds per row.
    Rehearsing a refiner row (SegFix) adds one line for DenseCRF at Cityscapes' size."""
    from pna.configs import list_configs
    from pna.tools.children import child_lines

    unknown = [n for n in names if n not in list_configs()]
    if unknown:
        raise ValueError(f"unknown config(s) {unknown}; see pna.configs.list_configs()")
    if iters < 2 or not 0 <= warmup < iters:
        raise ValueError(f"iters must be >= 2 (a checkpoint and a resume) and warmup in [0, iters), "
                         f"got iters={iters}, warmup={warmup}")
    lines: list[dict] = []

    def record(line: dict) -> None:  # written after every row: an interrupted run keeps what it did
        lines.append(line)
        if path is not None:
            write_table(lines, path, update=update)

    options = ["--batch", str(batch), "--iters", str(iters), "--warmup", str(warmup), "--workers", str(workers)]
    groups = [names] if same_process else [[name] for name in names]
    rows = (line for group in groups for line in child_lines(group, device, timeout, options))
    for i, line in enumerate(rows, 1):
        record(line)
        print(f"[{i}/{len(names)}] {line['config']}: {line['status']} {line.get('s_per_iter', '')} s/iter, "
              f"peak {line.get('peak_mb', '')} MB, eval {line.get('eval_s', '')} s {line['error']}", flush=True)
        if line["status"] != "ok" and line.get("traceback"):
            print(line["traceback"], file=sys.stderr, flush=True)
    if any(is_refiner(n) for n in names):
        record(densecrf_line(device))
    if papermill:
        for dataset in NOTEBOOKS:
            line = papermill_row(dataset, device, timeout)
            record(line)
            print(f"{line['config']}: {line['status']} ({line['eval_s']} s) {line['error']}", flush=True)
    return lines
