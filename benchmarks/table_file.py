"""The one way a benchmark writes its CSV under ``results/benchmarks/``: the folder made, the file
replaced atomically (a failed or interrupted write leaves the earlier figures as they were), rows
kept from an earlier file when asked, columns in first-seen order (this run's first), and the
path printed. The standard library's ``csv`` does the writing; this module only fixes the habits
every benchmark shares, among them naming the code measured (:func:`code_version`).
"""
from __future__ import annotations

import csv
import subprocess
from pathlib import Path
from typing import Sequence


def read_rows(path: Path) -> list[dict]:
    """The rows of an earlier CSV (none when it does not exist)."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def write_rows(path: Path, rows: Sequence[dict], fields: Sequence[str] | None = None,
               kept: Sequence[dict] = ()) -> Path:
    """Write ``kept`` then ``rows`` to ``path`` (columns ``fields``, or every key in first-seen order,
    this run's rows first); cells a row lacks stay empty."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(fields) if fields else list(dict.fromkeys(k for row in [*rows, *kept] for k in row))
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows([*kept, *rows])
    tmp.replace(path)
    print(f"wrote {path}")
    return path


def code_version() -> str:
    """The commit of the checkout ``pna`` is imported from (``PYTHONPATH`` may name another one than
    this script's), ``-dirty`` when that checkout has uncommitted changes: the measured code is then
    not the commit alone."""
    import pna

    done = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(pna.__file__).resolve().parents[1],
                          capture_output=True, text=True)
    return done.stdout.strip() or "unknown"
