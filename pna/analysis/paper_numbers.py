"""The paper's numbers (``results/paper_numbers.csv``: every number of Tables 1-7) and ours beside them.

Example::

    >>> paper = load_paper_numbers()
    >>> float(paper.query("table == 'table1' and column == 'P4'").value.max())
    78.6
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from pna.paths import REPO_ROOT
from pna.engine.records import iter_results

PAPER_NUMBERS = REPO_ROOT / "results" / "paper_numbers.csv"


def trained_backbone(name: str, overrides: dict) -> str:
    """The backbone a run's model (registry ``name`` with its config ``overrides``) builds: the
    override, else the registry spec's ("?" for a model the registry no longer has)."""
    from pna.models import MODELS

    spec = MODELS.get(name)
    return overrides.get("backbone") or (spec.backbone if spec else "?")


def load_results(table: str | None = None, profile: str | None = None,
                 root: Path | None = None) -> pd.DataFrame:
    """One row per (result, stage): table, row, profile, dataset, split, stage, is_final, mIoU (%), and
    what was trained: ``trained_backbone`` (the backbone the run built) and ``trained_on`` (its training set)."""
    records = []
    for path, data in iter_results(table, profile, root):
        cfg = data["config"]
        for stage, metrics in data["metrics"]["stages"].items():
            records.append({
                "table": cfg["table"], "row": cfg["row"], "profile": cfg["profile"],
                "dataset": cfg["data"]["eval_dataset"] or cfg["data"]["dataset"],
                "split": data["metrics"].get("split", cfg["data"]["eval_split"]),
                "model": cfg["model"]["name"], "stage": stage,
                "trained_backbone": trained_backbone(cfg["model"]["name"], cfg["model"].get("overrides", {})), "trained_on": cfg["data"]["dataset"],
                "is_final": stage == data["metrics"]["final_stage"],
                "mIoU": None if metrics["mIoU"] is None else 100 * metrics["mIoU"],
                "config_hash": data["config_hash"], "iterations": data["iterations"],
                "wall_time_s": data["wall_time_s"], "path": str(path),
            })
    columns = ["table", "row", "profile", "dataset", "split", "model", "trained_backbone", "trained_on", "stage", "is_final", "mIoU",
               "config_hash", "iterations", "wall_time_s", "path"]
    return pd.DataFrame(records, columns=columns)


def load_paper_numbers(path: Path = PAPER_NUMBERS) -> pd.DataFrame:
    """Every number of Tables 1-7 (columns: table, method, backbone, dataset, split, column, value,
    unit, row, note); `row` names our config row where we train the same model."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"paper numbers not found at {path}")
    frame = pd.read_csv(path, dtype={"row": "string", "backbone": "string", "note": "string"})
    return frame


def ours_beside_paper(ours: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Our mIoU next to the paper's for every row both have, with what we trained (backbone and
    training set) and, for paper-profile results only, ``diff = ours - paper`` (points); ``stage`` is
    the stage of ours that each paper number pairs with.

    A paper column ``P0..P4`` pairs with that stage of ours, ``mIoU`` with our final stage. Table 1
    prints the single mIoU of a model without PNA stages in its P0 column: where a paper row has P0
    but no P1..P4, P0 pairs with our final stage (for PointRend that is the refined prediction).
    `ours` must hold a single profile: smoke numbers (synthetic data) and paper-profile numbers
    mean different things and are never put in one table.
    """
    profiles = sorted(set(ours["profile"]))
    if len(profiles) > 1:
        raise ValueError(f"results of several profiles {profiles}; select one, e.g. load_results(profile='paper')")
    paper = load_paper_numbers() if paper is None else paper
    paper = paper[paper["row"].notna() & paper["column"].str.match(r"^(P\d|mIoU)$")]
    staged = paper.loc[paper["column"].str.match(r"^P[1-4]$"), ["table", "row"]].drop_duplicates()
    has_stages = pd.MultiIndex.from_frame(paper[["table", "row"]]).isin(pd.MultiIndex.from_frame(staged))
    single = (paper["column"] == "P0").to_numpy() & ~has_stages
    paper = paper.assign(pair=paper["column"].where(~single, "mIoU"))
    ours = ours.assign(column=ours["stage"])
    final = ours[ours["is_final"]].assign(column="mIoU")
    ours = pd.concat([ours, final], ignore_index=True)
    merged = paper.merge(ours[["table", "row", "split", "column", "stage", "profile", "mIoU", "iterations",
                               "trained_backbone", "trained_on"]]
                         .rename(columns={"column": "pair"}),
                         on=["table", "row", "pair"], how="inner", suffixes=("", "_ours"))
    # The split must agree only where the paper reports the row on several splits (Trans10k val
    # and test); elsewhere the paper's split (e.g. DeepGlobe test) pairs with the one we evaluate.
    splits = paper.groupby(["table", "row", "column"])["split"].transform("nunique")
    several = merged.merge(paper.assign(several=splits > 1)[["table", "row", "column", "split", "several"]],
                           on=["table", "row", "column", "split"], how="left")["several"].fillna(False)
    merged = merged[(~several.to_numpy()) | (merged["split"] == merged["split_ours"]).to_numpy()]
    merged = merged.rename(columns={"value": "paper", "mIoU": "ours"})
    # A smoke number (synthetic data, small backbone) is no estimate of the paper's: no difference.
    merged["diff"] = (merged["ours"] - merged["paper"]).where(merged["profile"] == "paper")
    return merged[["table", "method", "backbone", "dataset", "split", "column", "stage", "row", "profile",
                   "paper", "ours", "diff", "trained_backbone", "trained_on", "iterations"]].reset_index(drop=True)
