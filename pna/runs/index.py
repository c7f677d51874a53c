"""What is under ``runs/``: one :class:`RunInfo` per run folder, read from the files a training leaves
(:mod:`pna.engine.rundir`), never from a checkpoint (a ``last.pt`` can be gigabytes).

A run's status, in this order:

* ``running``: its ``lock.json`` is live (:func:`pna.engine.runlock.stale_reason`); the holder is named;
* ``finished``: ``done.json`` exists (final mIoU per stage from it);
* ``failed``: ``failed.json`` holds the error that stopped its last training (with ``last.pt`` kept,
  when one was written, a ``--resume`` continues from it);
* ``interrupted``: anything else (``last.pt`` at the iteration of its last ``checkpoint`` log entry,
  or nothing saved yet). A stale lock (its process killed without a word) is mentioned.

Example::

    >>> import tempfile
    >>> scan_runs(tempfile.mkdtemp())
    []
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from pna.engine.rundir import RunDir
from pna.engine.runlock import describe_holder, lock_holder, stale_reason
from pna.engine.watch import read_run_log
from pna.paths import read_json, runs_dir

STATUSES = ("running", "finished", "failed", "interrupted")
# What marks a folder of runs/ as a run folder (anything else there is left alone).
RUN_FILES = ("config.json", "done.json", "last.pt", "log.jsonl", "lock.json", "failed.json")
STATUS_CHARS = 100  # of a status in the listing (`pna runs show` gives it whole)


@dataclass
class RunInfo:
    """One run folder as `pna runs` lists it (``mIoU``: final per-stage mIoU in %, finished runs only)."""

    path: Path
    status: str
    detail: str
    config: dict = field(default_factory=dict)
    config_hash: str | None = None
    iteration: int | None = None
    total: int | None = None
    miou: dict[str, float] = field(default_factory=dict)
    size_bytes: int = 0
    age_s: float = 0.0
    holder: dict | None = None
    error: str | None = None

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def row(self) -> str:
        return self.config.get("name", "?")

    @property
    def profile(self) -> str:
        return self.config.get("profile", "?")


def folder_size_and_age(path: Path, now: float | None = None) -> tuple[int, float]:
    """Bytes of every file under ``path`` and seconds since the newest of them changed."""
    size, newest = 0, 0.0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                stat = os.stat(os.path.join(root, name))
            except OSError:  # removed while we looked (a heartbeat's rename)
                continue
            size, newest = size + stat.st_size, max(newest, stat.st_mtime)
    return size, ((time.time() if now is None else now) - newest) if newest else 0.0


def _last(entries: list[dict], kind: str) -> dict | None:
    found = [e for e in entries if e.get("type") == kind and isinstance(e.get("iter"), int)]
    return found[-1] if found else None


def run_info(path: str | Path, now: float | None = None) -> RunInfo:
    """The :class:`RunInfo` of one run folder; a damaged file gives status ``failed`` naming it."""
    run = RunDir(path)
    size, age = folder_size_and_age(run.path, now)
    info = RunInfo(run.path, "interrupted", "", size_bytes=size, age_s=age)
    try:
        _read(run, info)
    except (OSError, ValueError, KeyError, TypeError) as error:
        info.status, info.error = "failed", f"unreadable run folder: {error}"
        info.detail = f"failed: {info.error}"
    return info


def _read(run: RunDir, info: RunInfo) -> None:
    record = read_json(run.done, "finished run's record") if run.done.is_file() else None
    stored = record or (read_json(run.config, "run config") if run.config.is_file() else {})
    info.config, info.config_hash = stored.get("config", {}), stored.get("config_hash")
    info.total = info.config.get("train", {}).get("iters")
    entries = read_run_log(run.log) if run.log.is_file() else []
    trained = _last(entries, "train")
    holder = lock_holder(run.path)
    stale = stale_reason(holder) if holder is not None else None
    of = f" of {info.total}" if info.total else ""
    if holder is not None and stale is None:
        info.status, info.holder = "running", holder
        info.iteration = trained["iter"] if trained else 0
        info.detail = f"running (at iteration {info.iteration}{of}; {describe_holder(holder)})"
        return
    if record is not None:
        info.status, info.iteration = "finished", record.get("iterations")
        info.miou = {k: 100 * v["mIoU"] for k, v in record["metrics"]["stages"].items()}
        info.detail = "finished"
    elif run.failed.is_file():
        failure = read_json(run.failed, "run failure record")
        info.status, info.iteration, info.error = "failed", failure.get("iter"), failure.get("error")
        where = f" after iteration {info.iteration}" if info.iteration is not None else " before training"
        info.detail = f"failed{where}: {info.error}"
    else:
        saved = _last(entries, "checkpoint") or _last(entries, "interrupted")
        if run.last.is_file():
            info.iteration = saved["iter"] if saved else None
            at = f"at iteration {info.iteration}{of}" if saved else f"(last.pt{of}; its iteration was not logged)"
            info.detail = f"interrupted {at}"
        else:
            info.iteration = 0
            info.detail = f"interrupted at iteration 0{of} (stopped before its first checkpoint)"
    if holder is not None:
        info.detail += f" (stale lock: {stale})"


def is_run_folder(path: Path) -> bool:
    return path.is_dir() and any((path / name).exists() for name in RUN_FILES)


def scan_runs(root: str | Path | None = None, now: float | None = None) -> list[RunInfo]:
    """Every run folder directly under ``root`` (default ``runs/``), by name."""
    root = Path(root or runs_dir())
    if not root.is_dir():
        return []
    return [run_info(p, now) for p in sorted(root.iterdir()) if is_run_folder(p)]


def find_run(name: str, root: str | Path | None = None) -> Path:
    """The run folder ``name``: a path, a folder name under ``root``, or the unique start of one
    (``fcn_r50_os32_pna-smoke``); a one-line error listing the candidates otherwise."""
    root = Path(root or runs_dir())
    for candidate in (Path(name), root / name):
        if is_run_folder(candidate):
            return candidate
    matches = [p for p in sorted(root.glob(f"{name}*")) if is_run_folder(p)] if root.is_dir() else []
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise ValueError(f"run {name!r} is ambiguous under {root}: {', '.join(p.name for p in matches)}")
    known = [p.name for p in sorted(root.iterdir()) if is_run_folder(p)] if root.is_dir() else []
    raise FileNotFoundError(f"no run {name!r} under {root}; runs there: {', '.join(known) or 'none'}")


def human_size(size: float) -> str:
    """``1536`` -> ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def human_age(seconds: float) -> str:
    """``5400`` -> ``'1.5 h'``."""
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            return f"{seconds / length:.1f} {unit}"
    return f"{seconds:.0f} s"


def runs_table(infos: list[RunInfo]) -> str:
    """The listing of ``pna runs``: one aligned line per run."""
    header = ("run", "row", "profile", "hash", "status", "iterations", "mIoU % per stage", "size", "age")
    lines = [header]
    for i in infos:
        its = "-" if i.iteration is None else f"{i.iteration}/{i.total}" if i.total else str(i.iteration)
        miou = " / ".join(f"{k} {v:.1f}" for k, v in i.miou.items()) or "-"
        status = i.detail if len(i.detail) <= STATUS_CHARS else i.detail[:STATUS_CHARS - 3] + "..."
        lines.append((i.name, i.row, i.profile, (i.config_hash or "?")[:10], status, its, miou,
                      human_size(i.size_bytes), human_age(i.age_s)))
    widths = [max(len(line[c]) for line in lines) for c in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip() for line in lines)
