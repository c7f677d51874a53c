"""The record of a run: its results JSON with provenance, written and read back.

:class:`RunResult` is what a training (or a reuse of its finished run) returns. Each training run
writes ``results/<table>/<row>.<profile>.json``: per-stage metrics plus where the
numbers come from (config and hash, seed, git commit and dirty flag, torch, device, world size,
effective batch and its split into processes x micro-batch x accumulation steps, with what BatchNorm
and hard-pixel mining saw and how that differs from the authors' (``batch_split``), dataset sizes,
iterations, wall time).

Example::

    >>> result_path("table1", "fcn_r50_os32", "smoke", Path("results")).as_posix()
    'results/table1/fcn_r50_os32.smoke.json'
"""
from __future__ import annotations

import platform
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from pna.engine.checkpoint import atomic_write_json
from pna.paths import REPO_ROOT, read_json, results_dir


# git answers in milliseconds; a hung filesystem must not hang the end of a training run.
GIT_TIMEOUT_S = 20


@dataclass
class RunResult:
    """A finished run: where it lives, its config, the per-stage metrics, the results JSON
    (``run_dir`` None: an evaluation of the authors' released model, nothing was trained)."""

    run_dir: Path | None
    config: object  # pna.configs.Config
    config_hash: str
    metrics: dict
    record: dict
    result_path: Path | None
    reused: bool
    finished: bool = True  # False: stopped by ``stop_after`` with its resume state saved (no metrics)

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "final.pt"

    def miou(self, stage: str | None = None) -> float:
        """mIoU (fraction) of `stage` (default: the final stage)."""
        return self.metrics["stages"][stage or self.metrics["final_stage"]]["mIoU"]


def git_state(repo: Path = REPO_ROOT) -> dict:
    """The commit of the working tree and whether it has uncommitted changes (None outside git)."""
    def run(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=GIT_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = run("rev-parse", "HEAD")
    status = run("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine() or "cpu"


def provenance(cfg, cfg_hash: str, device: torch.device | str, world_size: int,
               dataset_sizes: dict, iterations: int, wall_time_s: float, batch_split: dict | None = None) -> dict:
    """Everything needed to tell where a number comes from (``batch_split``:
    :func:`pna.engine.batch_split.describe_split` of the run)."""
    record = {
        "config_name": cfg.name,
        "config": cfg.to_dict(),
        "config_hash": cfg_hash,
        "profile": cfg.profile,
        "seed": cfg.train.seed,
        **git_state(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(torch.device(device)),
        "device_name": device_name(device),
        "cpu_threads": torch.get_num_threads(),
        "world_size": world_size,
        "effective_batch": cfg.train.batch_size,
        "batch_per_process": cfg.train.batch_size // world_size,
        "dataset_sizes": dataset_sizes,
        "iterations": iterations,
        "wall_time_s": round(wall_time_s, 2),
    }
    if batch_split is not None:
        record["batch_split"] = batch_split
    return record


def result_path(table: str, row: str, profile: str, root: Path | None = None) -> Path:
    return Path(root or results_dir()) / table / f"{row}.{profile}.json"


def read_result(table: str, row: str, profile: str, root: Path | None = None) -> dict:
    """The record of one trained row; FileNotFoundError naming the file and the run to make it."""
    path = result_path(table, row, profile, root)
    if not path.is_file():
        raise FileNotFoundError(f"no result {path}: train {table}/{row} ({profile}) first")
    return read_json(path, "results JSON")


def iter_results(table: str | None = None, profile: str | None = None,
                 root: Path | None = None) -> Iterator[tuple[Path, dict]]:
    """``(path, record)`` of every result under ``root`` (default results/), in path order; ``table``
    and ``profile`` keep those of one table / one profile (the file name says both, see result_path)."""
    pattern = f"{table or 'table*'}/*.{profile or '*'}.json"
    for path in sorted(Path(root or results_dir()).glob(pattern)):
        yield path, read_json(path, "results JSON")


def write_result(record: dict, root: Path | None = None, overwrite: bool = False) -> Path:
    """Write a run's record atomically to ``<root>/<table>/<row>.<profile>.json``.

    An existing file from a different config (another hash) is kept unless ``overwrite=True``;
    one from the same config is replaced (the same run, written again).
    """
    cfg = record["config"]
    path = result_path(cfg["table"], cfg["row"], cfg["profile"], root)
    check_result_free(path, record["config_hash"], overwrite)
    atomic_write_json(record, path)
    return path


def check_result_free(path: Path, cfg_hash: str, overwrite: bool = False) -> None:
    """The rule of :func:`write_result`, also checked before training (:mod:`pna.engine.preflight`):
    FileExistsError when ``path`` holds the result of another config and not ``overwrite``."""
    if not path.exists() or overwrite:
        return
    old = read_json(path, "results JSON")
    old_hash = old.get("config_hash") if isinstance(old, dict) else None
    if old_hash != cfg_hash:
        raise FileExistsError(
            f"{path} holds the result of another config (hash {str(old_hash)[:10]}, this run {cfg_hash[:10]}); "
            "pass overwrite=True (--overwrite) to replace it, or --results-dir (out_dir) to write elsewhere")


def finish_run(trainer, metrics: dict | None, results_dir, write_results: bool, overwrite: bool) -> RunResult:
    """The end of a training (``trainer``: :class:`pna.engine.train.Trainer`): final.pt, done.json
    (written last: a run is finished once it exists) and the results JSON; ``metrics`` None: it
    stopped early (``stop_after``) with its resume state saved."""
    from pna.engine import distributed as dist
    from pna.engine.batch_split import describe_split
    from pna.engine.checkpoint import atomic_save

    def _announce(text: str) -> None:
        if dist.is_main():
            print(text, flush=True)

    cfg, run, cfg_hash = trainer.cfg, trainer.run, trainer.hash
    if metrics is None:
        _announce(f"{cfg.name} ({cfg.profile}): stopped at iteration {trainer.iteration}; resume state in {run.last}")
        return RunResult(run.path, cfg, cfg_hash, {}, {"iteration": trainer.iteration}, None, reused=False,
                         finished=False)
    sizes = {"train": len(trainer.train_set), "eval": len(trainer.eval_set)}
    record = {**provenance(cfg, cfg_hash, trainer.device, trainer.world, sizes, trainer.iteration, trainer.elapsed,
                           describe_split(cfg, trainer.split)),
              "metrics": metrics, "run_dir": str(run.path), "log": str(run.log)}
    path = None
    if dist.is_main():
        atomic_save({"model": trainer.model.state_dict(), "config": cfg.to_dict(), "config_hash": cfg_hash,
                     "metrics": metrics, "iteration": trainer.iteration}, run.final)
        atomic_write_json(record, run.done)
        run.last.unlink(missing_ok=True)  # the finished run is final.pt; the resume state is no longer needed
        path = write_result(record, results_dir, overwrite=overwrite) if write_results else None
        if path is not None:
            record["result_path"] = str(path)
    dist.barrier()
    return RunResult(run.path, cfg, cfg_hash, metrics, record, path, reused=False)


def stage_scores(metrics: dict, stage: str | None = None) -> dict:
    """One stage (default: the final one) of a run's metrics as percentages: ``{"stage", "mIoU",
    <class>: IoU %}``, NaN for a class whose IoU is undefined (absent from labels and predictions).

    Example:
        >>> metrics = {"final_stage": "P1", "stages": {"P0": {"mIoU": 0.5, "per_class_iou": {"a": 0.5, "b": None}},
        ...            "P1": {"mIoU": 0.75, "per_class_iou": {"a": 0.75, "b": None}}}}
        >>> line = stage_scores(metrics)
        >>> line["stage"], line["mIoU"], line["a"], line["b"] != line["b"]
        ('P1', 75.0, 75.0, True)
    """
    stage = stage or metrics["final_stage"]
    scores = metrics["stages"][stage]
    return {"stage": stage, "mIoU": 100 * scores["mIoU"],
            **{c: float("nan") if v is None else 100 * v for c, v in scores["per_class_iou"].items()}}
