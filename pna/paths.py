"""Where the project reads and writes: the repository's results/ and runs/ folders.

Both can be moved with environment variables, which is how the test suite keeps the committed
results untouched: ``PNA_RESULTS_DIR`` (default ``<repo>/results``) and ``PNA_RUNS_DIR``
(default ``<repo>/runs``, trained models keyed by config hash).
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
