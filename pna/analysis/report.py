"""The tables notebook's engine: every paper table with ours beside it, the P0-P4 figure and the
training curves, regenerated from ``results/``.

One profile at a time: smoke numbers (synthetic data, small backbone) and paper-profile numbers
are never put in one table. Files written:

* ``results/tables/<table>.<profile>.md`` - paper rows, our value, the difference;
* ``results/figures/refinement_<row>.<profile>.png`` - image, label, P0..P4 (the paper's Fig. 3);
* ``results/figures/training_curves.<profile>.png``.

Example::

    >>> from pna.analysis.report import markdown_table
    >>> import pandas as pd
    >>> print(markdown_table(pd.DataFrame({"a": [1.0], "b": ["x"]})))
    | a | b |
    |---|---|
    | 1.0 | x |
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pna.paths import results_dir
from pna.engine.records import iter_results
from pna.analysis.paper_numbers import load_paper_numbers, load_results, ours_beside_paper

COST_COLUMNS = {"params_m": "params", "gflops": "GFLOPs", "fps": "FPS"}  # profile CSV -> paper column
# FPS is only comparable on one device: it is shown as the ratio to this row's FPS on the same device
# (the paper's 27.9 / 44.9 = 0.62 for FCN-OS-32 + NAM + SAM on an RTX 3090).
FPS_REFERENCE = "fcn_r50_os32"
FPS_RATIO = "FPS / FCN-OS-32"


def markdown_table(frame: pd.DataFrame, digits: int = 1) -> str:
    """A GitHub Markdown table (no extra dependency); floats rounded to ``digits``."""
    def cell(value) -> str:
        if isinstance(value, float):
            return "" if pd.isna(value) else f"{value:.{digits}f}"
        return "" if value is None or value is pd.NA else str(value)

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def _cost_measurements(table: str, root: Path) -> pd.DataFrame:
    """Params / GFLOPs / FPS we measured (``cost/<table>.csv``, see pna.analysis.cost), long format."""
    from pna.analysis.cost import load_cost_table

    try:
        wide = load_cost_table(table, root)
    except FileNotFoundError:
        return pd.DataFrame(columns=["row", "column", "ours"])
    wide = wide.rename(columns={"model": "row", **COST_COLUMNS})
    return wide.melt(id_vars=["row"], value_vars=list(COST_COLUMNS.values()), var_name="column", value_name="ours")


def _fps_as_ratio(frame: pd.DataFrame) -> pd.DataFrame:
    """Paper and our FPS divided by FCN-OS-32's FPS on the same device (each side its own)."""
    fps = frame["column"] == "FPS"
    reference = frame[fps & (frame["row"] == FPS_REFERENCE)]
    if not fps.any() or reference.empty:
        return frame
    frame = frame.copy()
    frame.loc[fps, "value"] = frame.loc[fps, "value"] / float(reference["value"].iloc[0])
    ours_reference = reference["ours"].iloc[0]
    frame.loc[fps, "ours"] = frame.loc[fps, "ours"] / ours_reference if pd.notna(ours_reference) else float("nan")
    frame.loc[fps, "column"] = FPS_RATIO
    return frame


def fps_note(table: str, root: Path | None = None) -> str:
    """The absolute FPS behind the ratios of ``table``, and the device they were measured on."""
    from pna.analysis.cost import load_cost_table

    try:
        cost = load_cost_table(table, Path(root or results_dir())).set_index("model")
    except FileNotFoundError:
        return ""
    if FPS_REFERENCE not in cost.index or "fps" not in cost:
        return ""
    ours = ", ".join(f"{m} {v:.3g}" for m, v in cost["fps"].dropna().items())
    size, device = cost.loc[FPS_REFERENCE, "size"], cost.loc[FPS_REFERENCE, "device"]
    return (f"FPS is shown as the ratio to FCN-OS-32 on the same device. Absolute: paper on an RTX 3090 "
            f"(FCN-OS-32 44.9 images/s); ours at {size} on {device}: {ours} images/s.")


def table_beside_paper(table: str, profile: str, root: Path | None = None) -> pd.DataFrame:
    """Every number the paper prints for ``table``, with ours (this profile) and the difference;
    rows we have not run, or that the paper only cites, keep an empty ``ours``."""
    root = Path(root or results_dir())
    paper = load_paper_numbers()
    paper = paper[paper["table"] == table]
    ours = load_results(table, profile=profile, root=root)
    merged = ours_beside_paper(ours, paper) if len(ours) else pd.DataFrame(columns=["method", "backbone", "split", "column", "ours"])
    keys = ["method", "backbone", "split", "column"]
    frame = paper.merge(merged[keys + ["ours"]], on=keys, how="left")
    cost = _cost_measurements(table, root)
    if len(cost):
        frame = frame.merge(cost.rename(columns={"ours": "ours_cost"}), on=["row", "column"], how="left")
        frame["ours"] = frame["ours"].fillna(frame.pop("ours_cost"))
    frame = _fps_as_ratio(frame)
    frame["diff"] = frame["ours"] - frame["value"]
    cost = frame["column"].isin([*COST_COLUMNS.values(), FPS_RATIO])
    trained = ours[ours["is_final"].astype(bool)].drop_duplicates("row").set_index("row")
    what = {row: f"{r.trained_backbone} on {r.trained_on}, run {r.config_hash[:8]}" for row, r in trained.iterrows()}
    frame["ours: trained as"] = frame["row"].map(what).where(~cost & frame["ours"].notna(), "")
    frame.loc[cost & frame["ours"].notna(), "ours: trained as"] = "the paper-scale model (measured, not trained)"
    if profile != "paper":  # a smoke number is no estimate of the paper's: no difference is shown
        frame.loc[~cost, "diff"] = float("nan")
    frame = frame.rename(columns={"value": "paper"})
    return frame[["method", "backbone", "split", "column", "paper", "ours", "diff", "ours: trained as",
                  "row"]].reset_index(drop=True)


def shared_runs_note(table: str, profile: str, root: Path | None = None) -> str:
    """Rows of ``table`` whose results come from the same training as a row of another table (the
    same config hash: e.g. the smoke profile trains DeepGlobe's and Trans10k's FPN + PNA on one
    synthetic set, so Tables 5 and 6 show one run)."""
    everything = load_results(profile=profile, root=Path(root or results_dir()))
    final = everything[everything["is_final"].astype(bool)]
    notes = []
    for _, line in final[final["table"] == table].iterrows():
        others = final[(final["config_hash"] == line["config_hash"]) & (final["table"] != table)]
        if len(others):
            names = ", ".join(f"{t}/{r}" for t, r in zip(others["table"], others["row"]))
            notes.append(f"`{line['row']}` is the same training as {names} (run {line['config_hash'][:8]}, "
                         f"trained on {line['trained_on']})")
    return ("Shared runs: " + "; ".join(notes) + ".") if notes else ""


def write_tables(profile: str = "smoke", root: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """Write ``tables/<table>.<profile>.md`` for every paper table that has at least one result of
    ``profile``; returns the tables by name."""
    root = Path(root or results_dir())
    out = root / "tables"
    out.mkdir(parents=True, exist_ok=True)
    tables = {}
    for table in sorted(load_paper_numbers()["table"].unique()):
        frame = table_beside_paper(table, profile, root)
        if frame["ours"].isna().all():
            continue
        scale = ("smoke scale: every row trained on the synthetic set with the small backbone named in "
                 "'ours: trained as', a few hundred CPU iterations; not comparable with the paper's numbers, so "
                 "no difference is shown (cost rows measure the paper-scale model)" if profile == "smoke"
                 else "paper settings")
        notes = [fps_note(table, root) if (frame["column"] == FPS_RATIO).any() else "",
                 shared_runs_note(table, profile, root)]
        text = f"# {table}: ours ({profile}) beside the paper\n\n_{scale}._\n\n{markdown_table(frame, 2)}\n"
        text += "".join(f"\n{note}\n" for note in notes if note)
        (out / f"{table}.{profile}.md").write_text(text)
        tables[table] = frame
    return tables


def _records(profile: str, root: Path) -> list[dict]:
    return [record for _, record in iter_results(profile=profile, root=root)]


def refinement_figure(row: str, profile: str = "smoke", samples=(0, 1, 2), device: str = "cpu",
                      root: str | Path | None = None, table: str = "table1") -> Path:
    """Image, label and P0..P4 of the trained ``row`` on a few validation images."""
    from pna.configs import config_from_dict
    from pna.engine.build import load_run
    from pna.engine.records import read_result
    from pna.analysis.figures import plot_refinement, predict_labels, save_figure

    root = Path(root or results_dir())
    record = read_result(table, row, profile, root)
    model, dataset = load_run(record["run_dir"], config_from_dict(record["config"]), device)
    panels = []
    for index in samples:
        item = dataset[index]
        panels.append({"image": item["image"], "label": item["label"], "predictions": predict_labels(model, item["image"])})
    fig = plot_refinement(panels, dataset.palette, class_names=dataset.classes)
    return save_figure(fig, root / "figures" / f"refinement_{row}.{profile}.png")


def training_curves_figure(profile: str = "smoke", root: str | Path | None = None) -> Path:
    """Training loss against iteration of every run of ``profile`` whose log is still on disk, one
    panel per table (see :func:`pna.analysis.figures.plot_training_curves`)."""
    from pna.analysis.figures import plot_training_curves, save_figure

    root = Path(root or results_dir())
    logs: dict[str, str] = {}
    drawn: set[tuple[str, str]] = set()
    for r in _records(profile, root):
        table = r["config"]["table"]
        if r.get("log") and Path(r["log"]).is_file() and (table, r["log"]) not in drawn:
            drawn.add((table, r["log"]))  # rows of one table that share a run: drawn once, first label
            logs[f"{table}/{r['config']['row']}"] = r["log"]
    if not logs:
        raise FileNotFoundError(f"no {profile} training log found from the results in {root}")
    return save_figure(plot_training_curves(logs), root / "figures" / f"training_curves.{profile}.png")
