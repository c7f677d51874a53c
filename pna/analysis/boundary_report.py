"""Boundary quality per stage, for the notebooks: what refinement is for, beside mIoU.

Every evaluation records, per stage, Boundary IoU, the boundary F-score and trimap mIoU
(:mod:`pna.engine.boundary`). This module tabulates them:

* :func:`boundary_table`: one line per (row, stage) of the runs a notebook trained (%);
* :func:`boundary_beside_paper`: the same from ``results/`` with the paper's mIoU beside ours
  where the paper prints one; the paper reports no boundary metric, so those columns are ours
  alone and marked so;
* :func:`write_boundary_tables`: ``results/tables/<table>_boundary.<profile>.md`` and the figure
  ``results/figures/boundary_<table>.<profile>.png`` of every table with results.

A result evaluated before the boundary metrics existed shows empty (NaN) boundary cells.

Example::

    >>> metrics = {"final_stage": "P0", "stages": {"P0": {"mIoU": 0.5, "boundary_iou": {"mean": 0.25},
    ...            "boundary_f": {"mean": 0.4}, "trimap_miou": {"1": 0.2, "2": 0.3}}}}
    >>> boundary_frame({"fcn": metrics}).loc[("fcn", "P0")].to_dict()
    {'mIoU': 50.0, 'Boundary IoU': 25.0, 'boundary F': 40.0, 'trimap 1px': 20.0, 'trimap 2px': 30.0}
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import pandas as pd

from pna.paths import results_dir
from pna.engine.records import iter_results

BIOU, BF = "Boundary IoU", "boundary F"
NOT_REPORTED = "n/r"  # a number the paper does not print
OURS_ONLY = "(ours only)"


def _pct(value) -> float:
    return float("nan") if value is None else 100 * value


def boundary_frame(metrics_by_row: Mapping[str, dict]) -> pd.DataFrame:
    """mIoU, Boundary IoU, boundary F and trimap mIoU (%) of every stage: index (row, stage)."""
    lines = []
    for row, metrics in metrics_by_row.items():
        for stage, m in metrics["stages"].items():
            line = {"row": row, "stage": stage, "mIoU": _pct(m["mIoU"]),
                    BIOU: _pct(m.get("boundary_iou", {}).get("mean")), BF: _pct(m.get("boundary_f", {}).get("mean"))}
            line.update({f"trimap {w}px": _pct(v) for w, v in m.get("trimap_miou", {}).items()})
            lines.append(line)
    if not lines:
        return pd.DataFrame(index=pd.MultiIndex.from_arrays([[], []], names=["row", "stage"]))
    return pd.DataFrame(lines).set_index(["row", "stage"])


def boundary_table(runs: Mapping) -> pd.DataFrame:
    """:func:`boundary_frame` of the runs a notebook trained (row name -> RunResult)."""
    return boundary_frame({row: run.metrics for row, run in runs.items()})


def boundary_gain(metrics: dict, first: str = "P0", last: str = "P4") -> dict | None:
    """Points gained from ``first`` to ``last`` in mIoU and Boundary IoU; None without boundary metrics."""
    stages = metrics["stages"]
    if first not in stages or last not in stages or any("boundary_iou" not in stages[s] for s in (first, last)):
        return None
    return {name: 100 * (stages[last][key] - stages[first][key]) if key == "mIoU" else
            100 * (stages[last][key]["mean"] - stages[first][key]["mean"])
            for name, key in (("mIoU", "mIoU"), (BIOU, "boundary_iou"))}


def load_boundary_results(table: str, profile: str, root: str | Path | None = None) -> pd.DataFrame:
    """:func:`boundary_frame` of every ``profile`` result of ``table`` in ``root`` (default results/)."""
    return boundary_frame({record["config"]["row"]: record["metrics"]
                           for _, record in iter_results(table, profile, root)})


def _paper_miou(table: str, profile: str, root: Path) -> dict[tuple[str, str], float]:
    """The paper's mIoU of (row, stage) where ours_beside_paper pairs one with ours."""
    from pna.analysis.paper_numbers import load_results, ours_beside_paper

    ours = load_results(table, profile=profile, root=root)
    if ours.empty:
        return {}
    pairs = {}
    for line in ours_beside_paper(ours).itertuples():  # the first where the paper has several splits
        pairs.setdefault((line.row, line.stage), float(line.paper))
    return pairs


def boundary_beside_paper(table: str, profile: str, root: str | Path | None = None) -> pd.DataFrame:
    """Every stage of every ``profile`` result of ``table``: the paper's mIoU where it prints one
    (``n/r`` where it does not), ours, the difference (paper-profile results only: a smoke number
    is no estimate of the paper's), and our boundary metrics (the paper has none: the columns say
    ``(ours only)``)."""
    root = Path(root or results_dir())
    ours = load_boundary_results(table, profile, root)
    if ours.empty:
        return ours
    paper = _paper_miou(table, profile, root)
    frame = ours.rename(columns={c: f"{c} {OURS_ONLY}" for c in ours.columns if c != "mIoU"})
    values = [paper.get(key, float("nan")) for key in frame.index]
    frame.insert(0, "mIoU (paper)", [NOT_REPORTED if pd.isna(v) else v for v in values])
    frame = frame.rename(columns={"mIoU": "mIoU (ours)"})
    comparable = profile == "paper"
    frame.insert(2, "diff", [o - v if comparable and not pd.isna(v) else float("nan")
                             for o, v in zip(frame["mIoU (ours)"], values)])
    return frame


def write_boundary_tables(profile: str = "smoke", root: str | Path | None = None) -> dict[str, tuple[pd.DataFrame, Path]]:
    """For every table with ``profile`` results: ``tables/<table>_boundary.<profile>.md`` and
    ``figures/boundary_<table>.<profile>.png``; returns {table: (frame, figure path)}."""
    from pna.analysis.boundary_figures import plot_boundary_stages
    from pna.analysis.figures import save_figure
    from pna.analysis.report import markdown_table

    root = Path(root or results_dir())
    written = {}
    for folder in sorted(p for p in root.glob("table*") if p.is_dir()):
        frame = boundary_beside_paper(folder.name, profile, root)
        if frame.empty:
            continue
        text = (f"# {folder.name}: boundary quality per stage ({profile})\n\n"
                f"_mIoU beside the paper's where it prints one ({NOT_REPORTED}: not reported). The paper reports "
                f"no boundary metric: the columns marked {OURS_ONLY} are ours alone. Boundary IoU at d = 2% of "
                "the image diagonal, boundary F at 0.75% of it, trimap mIoU in a band of the given width around "
                "the label's boundaries (pna/engine/boundary.py)._\n\n"
                f"{markdown_table(frame.reset_index(), 1)}\n")
        out = root / "tables" / f"{folder.name}_boundary.{profile}.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        figure = plot_boundary_stages(load_boundary_results(folder.name, profile, root),
                                      title=f"{folder.name} ({profile}): mIoU and boundary quality per stage")
        written[folder.name] = (frame, save_figure(figure, root / "figures" / f"boundary_{folder.name}.{profile}.png"))
    return written
