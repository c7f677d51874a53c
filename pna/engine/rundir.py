"""A run directory: what it holds, whether it is finished, and the rules for reusing it.

Layout of ``runs/<model>-<profile>-<hash10>/``: ``config.json``, ``log.jsonl`` (one JSON object per
logged iteration or evaluation), ``last.pt`` (the periodic checkpoint, removed once the run is
finished), ``final.pt`` (weights, config and metrics) and ``done.json`` (the finished run's record).

Example::

    >>> import tempfile, pathlib
    >>> run = RunDir(pathlib.Path(tempfile.mkdtemp()) / "r")
    >>> run.state("abc")
    'empty'
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from pna.paths import runs_dir


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

    def record(self) -> dict:
        return json.loads(self.done.read_text())

    def stored_hash(self) -> str | None:
        for source in (self.done, self.config):
            if source.is_file():
                return json.loads(source.read_text()).get("config_hash")
        return None

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
        """'reuse' (finished, same config), 'resume', or 'fresh'; raise where a run would be lost.

        A finished run is replaced only with ``overwrite``; an interrupted one is continued with
        ``resume`` (or ``reuse``: the same config, so the same model), or replaced with ``overwrite``.
        """
        state = self.state(cfg_hash)
        if overwrite:
            if self.path.exists():
                shutil.rmtree(self.path)
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
        return "fresh"  # also with resume: nothing to resume yet (e.g. killed before the first checkpoint)
