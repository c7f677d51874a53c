"""Per-class IoU from the results JSONs, and the thin-class figure, for the notebooks.

Reads ``results/<table>/<row>.<profile>.json`` (each holds the per-class IoU of every stage) and
writes:

* ``results/tables/<table>_per_class.<profile>.md``: each row's final-stage IoU per class, the thin
  classes of the synthetic set marked ``*name*``;
* ``results/figures/thin_classes_<row>.<profile>.png``: the thin classes' IoU per stage of one PNA
  row beside the oracle at each stage's stride (:func:`pna.analysis.thin.oracle_table`) and the final stage
  of its baselines (:func:`pna.analysis.thin.plot_thin_classes`).

Example::

    >>> import pandas as pd
    >>> frame = pd.DataFrame({"stage": ["P4"], "mIoU": [80.0], "disc": [90.0], "stripe": [70.0]}, index=["m"])
    >>> list(mark_thin(frame).columns)
    ['stage', 'mIoU', 'disc', '*stripe*']
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Sequence

import pandas as pd

from pna.paths import results_dir
from pna.engine.records import iter_results, read_result, result_path, stage_scores
from pna.analysis.thin import THIN_CLASSES, dataset_labels, oracle_table, plot_thin_classes


def mark_thin(frame: pd.DataFrame, thin: Sequence[str] = THIN_CLASSES) -> pd.DataFrame:
    """``frame`` with the thin-class columns renamed ``*name*`` (italic in Markdown)."""
    return frame.rename(columns={c: f"*{c}*" for c in frame.columns if c in thin})


def rows_per_class_table(table: str, profile: str = "smoke", root: str | Path | None = None,
                         write: bool = True) -> pd.DataFrame:
    """Final-stage IoU (%) per class of every ``profile`` result of ``table``: one line per row.

    With ``write``, also ``tables/<table>_per_class.<profile>.md`` (thin classes marked).
    """
    from pna.analysis.report import markdown_table

    root = Path(root or results_dir())
    lines = {}
    for _, record in iter_results(table, profile, root):
        lines[record["config"]["row"]] = stage_scores(record["metrics"])
    if not lines:
        raise FileNotFoundError(f"no {profile} results of {table} in {root}: run its notebook first")
    frame = pd.DataFrame.from_dict(lines, orient="index")
    if write:
        out = root / "tables" / f"{table}_per_class.{profile}.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        marked = mark_thin(frame).reset_index(names="row")
        out.write_text(f"# {table}: IoU per class at each row's final stage ({profile})\n\n"
                       f"_Thin classes in italics._\n\n{markdown_table(marked, 1)}\n")
    return frame


def thin_classes_figure(row: str = "fcn_r50_os32_pna", profile: str = "smoke", root: str | Path | None = None,
                        baselines: Sequence[str] = ("fcn_r50_os8", "fcn_r50_os32"), table: str = "table1",
                        thin: Sequence[str] = THIN_CLASSES) -> tuple[Path, pd.DataFrame]:
    """The thin classes' IoU per stage of ``row`` beside the oracle at each stride and the final
    stage of each baseline that was trained; returns the PNG's path and the oracle table (IoU % per
    stride). ValueError when the row's dataset has none of ``thin`` (real datasets)."""
    from pna.configs import config_from_dict
    from pna.engine.build import build_eval_set
    from pna.analysis.figures import save_figure

    root = Path(root or results_dir())
    record = read_result(table, row, profile, root)
    dataset = build_eval_set(config_from_dict(record["config"]))
    missing = [c for c in thin if c not in dataset.classes]
    if missing:
        raise ValueError(f"{dataset!r} has no class {missing}: the thin-class figure is for the synthetic set")
    oracle = oracle_table(dataset_labels(dataset), dataset.classes)
    runs = {b: SimpleNamespace(metrics=read_result(table, b, profile, root)["metrics"]) for b in baselines
            if result_path(table, b, profile, root).is_file()}
    fig = plot_thin_classes(SimpleNamespace(metrics=record["metrics"]), oracle, runs, thin,
                            title=f"{row} ({profile}): thin-class IoU per stage (stage / output stride)")
    return save_figure(fig, root / "figures" / f"thin_classes_{row}.{profile}.png"), oracle
