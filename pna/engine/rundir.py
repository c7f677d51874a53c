"""A run directory: what it holds, whether it is finished, and the rules for reusing it.

Layout of ``runs/<model>-<profile>-<hash10>/``: ``config.json``, ``log.jsonl`` (one JSON object per
logged iteration or evaluation), ``last.pt`` (the periodic checkpoint, removed once the run is
finished), ``final.pt`` (weights, config and metrics), ``done.json`` (the finished run's record,
written last: a run is finished once it exists), ``failed.json`` (the error that stopped its last
training, :func:`pna.engine.watch.record_failure`; removed when a training starts again), TensorBoard's
``events.out.tfevents.*`` (``--tensorboard``) and, while a process trains it, ``lock.json``
(:mod:`pna.engine.runlock`: one run folder, one writer).

:meth:`RunDir.claim` is how a training starts: a finished run is reused without a lock (unless a live
lock says it is being trained again), anything else is decided under the lock.

Example::

    >>> import tempfile, pathlib
    >>> run = RunDir(pathlib.Path(tempfile.mkdtemp()) / "r")
    >>> run.state("abc")
    'empty'
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from pna.engine.runlock import (LOCK_NAME, WAIT_POLL_S, RunLock, RunLocked, describe_holder, lock_holder,
                                stale_reason)
from pna.paths import read_json, runs_dir

# What an overwrite leaves in the folder: the lock of the training that overwrites, and torchrun's
# rank logs of the launch now running (pna.engine.launch)
KEPT_ON_OVERWRITE = (LOCK_NAME, "ranks")


def default_run_dir(model: str, profile: str, cfg_hash: str) -> Path:
    """``runs/<model>-<profile>-<hash10>``: named by what is trained, not by the table row asking,
    so rows of different tables that train the same config find the same run."""
    return runs_dir() / f"{model}-{profile}-{cfg_hash[:10]}"


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    config = property(lambda self: self.path / "config.json")
    log = property(lambda self: self.path / "log.jsonl")
    last = property(lambda self: self.path / "last.pt")
    final = property(lambda self: self.path / "final.pt")
    done = property(lambda self: self.path / "done.json")
    failed = property(lambda self: self.path / "failed.json")

    def record(self) -> dict:
        return read_json(self.done, "finished run's record")

    def stored_hash(self) -> str | None:
        for source in (self.done, self.config):
            if source.is_file():
                data = read_json(source, "run file")
                if not isinstance(data, dict):
                    raise ValueError(f"run file {source} holds no run record (a JSON object was expected)")
                return data.get("config_hash")
        return None

    def live_holder(self) -> dict | None:
        """The holder of this folder's lock while it is live (module :mod:`pna.engine.runlock`), else None."""
        holder = lock_holder(self.path)
        return holder if holder is not None and stale_reason(holder) is None else None

    def state(self, cfg_hash: str) -> str:
        """'empty', 'finished', 'finished-other' (another config), 'partial', 'partial-other'."""
        if not self.path.exists() or not any(self.path.iterdir()):
            return "empty"
        same = self.stored_hash() == cfg_hash
        if self.done.is_file():
            return "finished" if same else "finished-other"
        if self.last.is_file():
            return "partial" if same else "partial-other"
        return "empty" if same or self.stored_hash() is None else "partial-other"

    def decide(self, cfg_hash: str, resume: bool, overwrite: bool, reuse: bool) -> str:
        """'reuse' (finished, same config), 'resume', 'fresh', or 'restart' (``resume`` of a run of this
        config stopped before its first checkpoint: trained from the start); raise where a run would be
        lost or ``resume`` finds no run. Called with the folder's lock held (:meth:`claim`).

        A finished run is replaced only with ``overwrite``; an interrupted one is continued with
        ``resume`` (or ``reuse``: the same config, so the same model), or replaced with ``overwrite``.
        """
        state = self.state(cfg_hash)
        if overwrite:
            for item in self.path.iterdir() if self.path.is_dir() else []:
                if item.name not in KEPT_ON_OVERWRITE:
                    shutil.rmtree(item) if item.is_dir() else item.unlink()
            return "fresh"
        if state == "finished" and reuse:
            return "reuse"
        if state in ("finished", "finished-other"):
            what = "this config" if state == "finished" else f"another config (hash {self.stored_hash()})"
            raise FileExistsError(f"{self.path} holds a finished run of {what}; pass overwrite=True "
                                  "(--overwrite) to replace it, or reuse=True to load it")
        if state == "partial" and (resume or reuse):
            return "resume"
        if state == "partial":
            raise FileExistsError(f"{self.path} holds an interrupted run of this config; pass resume=True "
                                  "(--resume) to continue it or overwrite=True (--overwrite) to restart")
        if state == "partial-other":
            raise FileExistsError(f"{self.path} holds a run of another config (hash {self.stored_hash()}); "
                                  "choose another --out or pass overwrite=True (--overwrite)")
        if resume and self.stored_hash() == cfg_hash:
            return "restart"  # a run of this config killed before its first checkpoint: nothing to resume
        if resume:
            raise FileNotFoundError(f"nothing to resume in {self.path}: it holds no run (no config.json, no "
                                    "last.pt); train without --resume (resume=False) to start one")
        return "fresh"

    def check_resumable(self) -> None:
        """``--resume`` of a folder that does not exist: one line, before anything is built."""
        if not self.path.is_dir():
            raise FileNotFoundError(f"nothing to resume: run folder {self.path} does not exist; check --out, "
                                    "or train without --resume (resume=False) to start the run")

    def claim(self, cfg_hash: str, resume: bool, overwrite: bool, reuse: bool, wait: bool,
              say=print) -> tuple[str, RunLock | None] | None:
        """What a training of ``cfg_hash`` does with this folder, and the lock it then holds:
        ``("reuse", None)`` for a finished run (no lock; none is live), ``(action of decide, lock)``
        otherwise; None while another process holds a live lock and ``wait``; else :class:`RunLocked`."""
        holder = self.live_holder()
        if holder is None and reuse and not overwrite and self.state(cfg_hash) == "finished":
            return "reuse", None
        if holder is None:
            self.path.mkdir(parents=True, exist_ok=True)
            lock = RunLock(self.path, say)
            try:
                lock.acquire()
            except RunLocked as locked:
                holder = locked.holder
            else:
                try:
                    action = self.decide(cfg_hash, resume, overwrite, reuse)
                except BaseException:
                    lock.release()
                    raise
                if action == "reuse":  # finished while we looked: read without the lock
                    lock.release()
                    return "reuse", None
                return action, lock
        if not wait:
            raise RunLocked(self.path, holder)
        return None


def claim_run(run: RunDir, cfg_hash: str, resume: bool, overwrite: bool, reuse: bool,
              wait: bool) -> tuple[str, RunLock | None]:
    """:meth:`RunDir.claim` on rank 0 (the only holder of the lock), its action on every rank. With
    ``wait``, a live lock is looked at again every :data:`WAIT_POLL_S` s (the ranks waiting with
    rank 0) until it is released: then the run is reused if it finished, resumed if it stopped."""
    from pna.engine import distributed as dist

    lock, said = None, False
    while True:
        action = None
        if dist.is_main():
            try:
                claimed = run.claim(cfg_hash, resume, overwrite, reuse, wait)
            except BaseException as error:
                dist.broadcast_object(f"error: {error}")
                raise
            if claimed is None and not said:
                holder = lock_holder(run.path)
                print(f"{run.path} is being trained by {describe_holder(holder) if holder else 'another process'}; "
                      "waiting for it (--wait)", flush=True)
                said = True
            action, lock = claimed or ("wait", None)
        action = dist.broadcast_object(action)
        if action.startswith("error: "):
            raise RuntimeError(f"rank 0 refused to train: {action[7:]}")
        if action != "wait":
            return action, lock
        time.sleep(WAIT_POLL_S)
