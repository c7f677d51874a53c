"""Where the project reads and writes: the repository's results/ and runs/ folders.

Both can be moved with environment variables, which is how the test suite keeps the committed
results untouched: ``PNA_RESULTS_DIR`` (default ``<repo>/results``) and ``PNA_RUNS_DIR``
(default ``<repo>/runs``, trained models keyed by config hash).

:func:`read_text` and :func:`read_json` read the text files a user points at (results JSONs, a run
folder's JSON files, split lists, notebooks) with errors that name the file.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def results_dir() -> Path:
    """The folder that receives results JSONs, tables, figures and benchmarks."""
    return Path(os.environ.get("PNA_RESULTS_DIR", REPO_ROOT / "results"))


def runs_dir() -> Path:
    """The folder that holds training runs (checkpoints, logs), shared between notebooks."""
    return Path(os.environ.get("PNA_RUNS_DIR", REPO_ROOT / "runs"))


def notebooks_dir() -> Path:
    return REPO_ROOT / "notebooks"


def read_text(path: str | Path, what: str = "file") -> str:
    """The text of ``path`` (UTF-8), or a one-line error naming it: missing, a folder, or not text
    (a binary file where a JSON / list / notebook file was expected: ``'utf-8' codec can't
    decode byte 0x80`` says neither which file nor what was expected)."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder, not a file")
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    except UnicodeDecodeError as error:
        raise ValueError(f"{what} {path} is not text (byte {error.object[error.start]:#04x} at offset "
                         f"{error.start} is not UTF-8): a binary file where text was expected") from None


def read_json(path: str | Path, what: str = "JSON file"):
    """The JSON value in ``path``, or a one-line error naming the file and what is wrong with it."""
    import json

    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{what} {path} is not valid JSON ({error.msg} at line {error.lineno} column "
                         f"{error.colno}): damaged or not written by pna") from None
