"""Deleting run folders (``pna runs clean``): failed or interrupted runs, or runs older than an age.

Only folders under ``runs/`` are deleted, whole; a results JSON under ``results/`` is never touched
(a finished run's numbers stay where the tables read them). A run whose lock is live (being
trained) is never deleted: it is named and skipped, and the lock is looked at again just before
each deletion.

Example::

    >>> parse_age("36h"), parse_age("2d"), parse_age("90min")
    (129600.0, 172800.0, 5400.0)
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Callable

from pna.engine.rundir import RunDir
from pna.paths import results_dir
from pna.runs.index import RunInfo

AGE_UNITS = {"s": 1, "min": 60, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """Seconds of an age such as ``7d``, ``12h``, ``30min``, ``2w`` (a bare number: days)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|min|m|h|d|w)?\s*", str(text))
    if not match:
        raise ValueError(f"--older-than {text!r}: expected a number and a unit, e.g. 7d, 12h, 30min, 2w")
    return float(match.group(1)) * AGE_UNITS[match.group(2) or "d"]


def select_runs(infos: list[RunInfo], failed: bool = False, interrupted: bool = False,
                older_than_s: float | None = None) -> tuple[list[RunInfo], list[RunInfo]]:
    """(the runs to delete, the running runs that matched and are skipped). ``failed`` / ``interrupted``
    choose by status (either, or both); ``older_than_s`` keeps those unchanged for longer (alone: any
    status, finished runs included)."""
    if not (failed or interrupted or older_than_s is not None):
        raise ValueError("pna runs clean: say what to delete: --failed, --interrupted and/or --older-than AGE")
    statuses = {s for s, chosen in (("failed", failed), ("interrupted", interrupted)) if chosen}
    matched = [i for i in infos if (not statuses or i.status in statuses)
               and (older_than_s is None or i.age_s > older_than_s)]
    running = [i for i in matched if i.status == "running"]
    return [i for i in matched if i.status != "running"], running


def delete_runs(chosen: list[RunInfo], say: Callable[[str], None] = print) -> int:
    """Delete the run folders ``chosen``; returns the bytes freed. A folder that became live meanwhile,
    or that lies in results/, is skipped with a line."""
    freed, results = 0, results_dir().resolve()
    for info in chosen:
        path = Path(info.path).resolve()
        if path == results or results in path.parents or path in results.parents:
            say(f"skipped {info.path}: it is in (or holds) the results folder {results}")
            continue
        holder = RunDir(path).live_holder()
        if holder is not None:
            say(f"skipped {info.path}: it is being trained again")
            continue
        shutil.rmtree(path)
        freed += info.size_bytes
        say(f"deleted {info.path} ({info.detail})")
    return freed
