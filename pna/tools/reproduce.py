"""Run every notebook with papermill, then the tables notebook (``pna reproduce``, ``make reproduce``).

This is what ``make reproduce`` calls. Executed notebooks go to ``results/executed/`` (ignored by
git: they carry outputs); the notebooks themselves write metrics into ``results/``. Trained models
are cached in ``runs/`` by config hash, so notebooks that share a model train it once.

Example::

    pna reproduce                      # smoke profile, every notebook
    pna reproduce --only 00 07         # a subset, by number prefix
    pna reproduce -p device cuda       # extra papermill parameters (literals)
"""
from __future__ import annotations

import csv
import time
from pathlib import Path

from pna.paths import notebooks_dir, results_dir

# The tables notebook reads what every other notebook wrote (the refiners table of notebook 08
# included): it runs last, whatever its number.
TABLES_NOTEBOOK = "07_tables_and_figures.ipynb"


def find_notebooks(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks in run order (by number, the tables notebook last); ``only`` keeps
    those whose name starts with a prefix."""
    notebooks = sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"), key=lambda nb: (nb.name == TABLES_NOTEBOOK, nb.name))
    if only:
        notebooks = [nb for nb in notebooks if any(nb.name.startswith(p) for p in only)]
        if not notebooks:
            raise ValueError(f"--only {only}: no notebook in {notebooks_dir()} starts with these")
    return notebooks


def run_notebook(notebook: Path, out_dir: Path, parameters: dict) -> float:
    """Execute one notebook with papermill; returns its wall time in seconds."""
    import papermill

    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    papermill.execute_notebook(
        str(notebook),
        str(out_dir / notebook.name),
        parameters=parameters,
        kernel_name="python3",
        cwd=str(notebook.parent),
        progress_bar=True,
    )
    return time.perf_counter() - start


def reproduce(profile: str = "smoke", only: list[str] | None = None, parameters: dict | None = None) -> list[tuple]:
    """Run the notebooks (all, or those whose name starts with a prefix of ``only``) with papermill;
    returns ``(notebook, seconds, executed kB)`` per notebook. A full run writes the timings to
    ``results/benchmarks/reproduce_<profile>.csv``; a subset's timings would replace the whole run's."""
    parameters = {"profile": profile, **(parameters or {})}
    notebooks = find_notebooks(only)
    executed = results_dir() / "executed"
    timings = []
    total_start = time.perf_counter()
    for i, notebook in enumerate(notebooks, 1):
        print(f"[{i}/{len(notebooks)}] {notebook.name} ({parameters})", flush=True)
        seconds = run_notebook(notebook, executed, parameters)
        kilobytes = (executed / notebook.name).stat().st_size / 1000  # the executed copy, outputs included
        timings.append((notebook.name, round(seconds, 1), round(kilobytes, 1)))
        print(f"[{i}/{len(notebooks)}] {notebook.name} done in {seconds:.0f} s ({kilobytes:.0f} kB executed)", flush=True)
    total = time.perf_counter() - total_start
    print(f"all {len(notebooks)} notebooks in {total / 60:.1f} min; executed copies in {executed}")
    bench = results_dir() / "benchmarks"
    if only:
        print(f"timings of a subset are not written: run without --only to refresh {bench}/reproduce_{profile}.csv")
        return timings
    bench.mkdir(parents=True, exist_ok=True)
    with open(bench / f"reproduce_{profile}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["notebook", "seconds", "executed_kB"])
        writer.writerows(timings + [("total", round(total, 1), round(sum(t[2] for t in timings), 1))])
    return timings
