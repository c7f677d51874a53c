"""What a notebook calls: train (or reuse) the rows of one paper table and tabulate them.

The notebooks stay thin: their ``parameters`` cell holds literals (profile, data_root, device,
rows, iters, batch_size, seed, out_dir) and hands them to :func:`run_rows`, which turns each into
a config (``pna.configs``), trains it (``pna.train``: a finished run of the same config is reused,
so notebooks that share a model train it once) and writes its results JSON.

Example::

    >>> from pna.experiments import table_rows
    >>> table_rows("table1")[:2]
    ['fcn_r50_os32', 'fcn_r50_os8']
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Sequence

import pandas as pd

from pna.configs import PAPER_DATA, ROWS, load_config
from pna.train import RunResult, build_eval_set, train


def table_rows(table: str) -> list[str]:
    """Row names of one paper table, in the paper's order."""
    rows = [row.name for row in ROWS.values() if row.table == table]
    if not rows:
        tables = sorted({row.table for row in ROWS.values()})
        raise ValueError(f"unknown table {table!r}; expected one of {tables}")
    return rows


def _config_name(table: str, row: str) -> str:
    for name, spec in ROWS.items():
        if spec.table == table and spec.name == row:
            return name
    raise ValueError(f"{table} has no row {row!r}; its rows are {table_rows(table)}")


def make_config(table: str, row: str, profile: str = "smoke", data_root: str | None = None,
                device: str = "auto", iters: int | None = None, batch_size: int | None = None,
                seed: int = 0, overrides: Sequence[str] = ()):
    """The config of one row with the notebook parameters applied (``None`` keeps the profile's).

    ``data_root=None`` means the built-in synthetic set (smoke) and is an error for ``paper``; a
    ``data_root`` with the smoke profile trains the smoke schedule on the row's real dataset."""
    name = _config_name(table, row)
    if profile == "paper" and data_root is None:
        raise ValueError(f"profile='paper' trains on the real dataset of {table}: give data_root "
                         "(the dataset folder, see data_prep/README.md)")
    changes = [f"train.seed={seed}", f"train.device={device}"]
    if data_root is not None:
        changes.append(f"data.root={str(data_root)!r}")
        if profile == "smoke":
            real = PAPER_DATA[ROWS[name].dataset]
            changes += [f"data.dataset={real['dataset']!r}", f"data.eval_split={real['eval_split']!r}",
                         f"data.eval_dataset={real.get('eval_dataset')!r}", "data.options={}"]
    if iters is not None:
        changes.append(f"train.iters={iters}")
    if batch_size is not None:
        changes.append(f"train.batch_size={batch_size}")
    return load_config(name, profile, [*changes, *overrides])


def run_rows(table: str, rows: Sequence[str] | None = None, profile: str = "smoke",
             data_root: str | None = None, device: str = "auto", iters: int | None = None,
             batch_size: int | None = None, seed: int = 0, out_dir: str | None = None,
             overrides: Sequence[str] = ()) -> dict[str, RunResult]:
    """Train (or reuse) each row of ``table`` and write its results JSON into ``out_dir``
    (default: ``results/``); ``rows=None`` runs every row of the table."""
    rows = table_rows(table) if rows is None else list(rows)
    configs = {row: make_config(table, row, profile, data_root, device, iters, batch_size, seed, overrides)
               for row in rows}  # every row is checked before the first one trains
    runs, start = {}, time.perf_counter()
    for i, (row, cfg) in enumerate(configs.items(), 1):
        print(f"[{i}/{len(configs)}] {table} / {row} ({profile})", flush=True)
        runs[row] = train(cfg, results_dir=out_dir)
    reused = sum(run.reused for run in runs.values())
    print(f"{table}: {len(runs)} row(s) in {time.perf_counter() - start:.0f} s, {len(runs) - reused} trained, "
          f"{reused} reused", flush=True)
    return runs


def stage_table(runs: dict[str, RunResult]) -> pd.DataFrame:
    """mIoU (%) of every stage of every run: one line per row, columns P0..P4 and ``final``."""
    lines = []
    for row, run in runs.items():
        stages = run.metrics["stages"]
        line = {"row": row, **{s: 100 * m["mIoU"] for s, m in stages.items()}}
        line["final"] = 100 * run.miou()
        lines.append(line)
    return pd.DataFrame(lines).set_index("row")


def load_trained(run: RunResult, device: str = "cpu"):
    """The trained model of a run (eval mode) and its evaluation dataset, for figures."""
    return load_run(run.run_dir, run.config, device)


def load_run(run_dir: str | Path, cfg, device: str = "cpu"):
    """The model in ``run_dir/final.pt`` (eval mode) and the evaluation dataset of ``cfg``."""
    from pna.checkpoint import load_checkpoint
    from pna.evaluate import model_from_checkpoint

    checkpoint_path = Path(run_dir) / "final.pt"
    if not checkpoint_path.is_file():
        raise FileNotFoundError(f"{checkpoint_path} not found: the run in {run_dir} did not finish or was removed")
    dataset = build_eval_set(cfg)
    checkpoint = load_checkpoint(checkpoint_path, map_location=device)
    model = model_from_checkpoint(checkpoint, dataset.num_classes).to(device).eval()
    return model, dataset
