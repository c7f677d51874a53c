"""``python -m pna.reproduce``: run every notebook with papermill, then the tables notebook.

This is what ``make reproduce`` calls. Executed notebooks go to ``results/executed/`` (ignored by
git: they carry outputs); the notebooks themselves write metrics into ``results/``. Trained models
are cached in ``runs/`` by config hash, so notebooks that share a model train it once.

Example::

    python -m pna.reproduce                      # smoke profile, every notebook
    python -m pna.reproduce --only 00 07         # a subset, by number prefix
    python -m pna.reproduce -p device cuda       # extra papermill parameters (literals)
"""
from __future__ import annotations

import argparse
import ast
import csv
import sys
import time
from pathlib import Path

from pna.paths import notebooks_dir, results_dir


def _literal(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def find_notebooks(only: list[str] | None = None) -> list[Path]:
    """The numbered notebooks in run order; ``only`` keeps those whose name starts with a prefix."""
    notebooks = sorted(notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="smoke", choices=["smoke", "paper"])
    parser.add_argument("--only", nargs="+", help="notebook number prefixes, e.g. 00 07")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="extra notebook parameter (a Python literal), passed to every notebook")
    args = parser.parse_args(argv)

    parameters = {"profile": args.profile, **{k: _literal(v) for k, v in args.parameter}}
    notebooks = find_notebooks(args.only)
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
    if args.only:  # a subset's timings would replace the whole run's (and reuse its cached models)
        print(f"timings of a subset are not written: run without --only to refresh {bench}/reproduce_{args.profile}.csv")
        return 0
    bench.mkdir(parents=True, exist_ok=True)
    with open(bench / f"reproduce_{args.profile}.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["notebook", "seconds", "executed_kB"])
        writer.writerows(timings + [("total", round(total, 1), round(sum(t[2] for t in timings), 1))])
    return 0


if __name__ == "__main__":
    from pna.cli import run

    sys.exit(run(main))  # errors as one line; --debug shows the traceback
