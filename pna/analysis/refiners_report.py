"""The refiners table, its figures and its claims, from ``results/refiners/<head>.<profile>.json``
(written by :func:`pna.analysis.refiners.compare_refiners`).

* :func:`refiners_frame` / :func:`write_refiners_table`: one line per (head, method) with mIoU,
  Boundary IoU, trimap mIoU, boundary F, params, GFLOPs and FPS -> ``results/tables/refiners.<profile>.md``;
* :func:`refiners_figure`: per head, the metrics per method and the crop where the methods differ
  most, side by side -> ``results/figures/refiners_<head>.<profile>.png``;
* :func:`check_refiner_claims`: the paper's ordering on the same head (PNA > SegFix > PointRend,
  Table 4's text) and ours (SegFix and DenseCRF on P0, SegFix on top of PNA), as
  :func:`pna.analysis.claims.enforce_claims` takes them.

Example::

    >>> record = {"head": "h", "title": "H", "profile": "smoke", "methods": {m: {"mIoU": 0.5 + i / 100,
    ...           "boundary_iou": 0.3, "boundary_f": 0.4, "trimap_miou": {"4": 0.2}, "params_m": 1.0,
    ...           "gflops": 2.0, "fps": 10.0} for i, m in enumerate(METHODS)}}
    >>> claims = check_refiner_claims({"h": record})
    >>> bool(claims.loc[0, "holds"]), claims.loc[0, "measured"]
    (True, 'PNA P4 54.0 vs P0 + SegFix 52.0')
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import pandas as pd

from pna.analysis.refiners_eval import METHODS
from pna.engine.checkpoint import atomic_write_json
from pna.paths import read_json, results_dir

TRIMAP_SHOWN = "4"  # the trimap band (px) the table shows; the JSON holds every width
COLUMNS = {"mIoU": "mIoU", "boundary_iou": "Boundary IoU", f"trimap {TRIMAP_SHOWN}px": f"trimap mIoU ({TRIMAP_SHOWN} px)",
           "boundary_f": "boundary F"}


# (head, method) -> (table, method, backbone, column) of results/paper_numbers.csv: the paper's
# number for that method on that head (ResNet-101 on Cityscapes, ResNet-50 on VOC), where it prints one.
_D3, _FPN = ("table4", "ResNet101", "mIoU"), ("table4", "ResNet101", "mIoU")
PAPER_MIOU: dict[tuple[str, str], tuple[str, str, str, str]] = {
    ("voc_fcn_os32", "P0"): ("table1", "FCN-OS-32", "ResNet50", "P0"),
    ("voc_fcn_os32", "PointRend"): ("table1", "FPN + PointRend", "ResNet50", "P0"),
    ("voc_fcn_os32", "PNA P4"): ("table1", "FCN-OS-32 + Ours (NAM + SAM)", "ResNet50", "P4"),
    **{("cityscapes_deeplabv3", m): (_D3[0], printed, *_D3[1:]) for m, printed in (
        ("P0", "DeeplabV3"), ("PointRend", "DeeplabV3 + PointRend"), ("P0 + SegFix", "DeeplabV3 + SegFix"),
        ("PNA P4", "DeeplabV3 + PNA (ours)"))},
    **{("cityscapes_fpn", m): (_FPN[0], printed, *_FPN[1:]) for m, printed in (
        ("P0", "FPN"), ("PointRend", "FPN + PointRend"), ("PNA P4", "FPN + PNA (ours)"))},
}
PAPER = "mIoU (paper)"


def paper_miou(head: str, method: str) -> float | None:
    """The paper's mIoU (%) of ``method`` on ``head`` (None where it prints none).

    >>> paper_miou("cityscapes_deeplabv3", "P0 + SegFix"), paper_miou("voc_fcn_os32", "P0 + DenseCRF")
    (80.5, None)
    """
    from pna.analysis.paper_numbers import load_paper_numbers

    if (head, method) not in PAPER_MIOU:
        return None
    table, printed, backbone, column = PAPER_MIOU[(head, method)]
    paper = load_paper_numbers()
    found = paper[(paper["table"] == table) & (paper["method"] == printed) & (paper["backbone"] == backbone)
                  & (paper["column"] == column)]
    return float(found["value"].iloc[0]) if len(found) == 1 else None


def record_path(head: str, profile: str, root: Path | str | None = None) -> Path:
    return Path(root or results_dir()) / "refiners" / f"{head}.{profile}.json"


def check_record_free(head: str, profile: str, hashes: Mapping[str, str], root: Path | str | None = None,
                      overwrite: bool = False) -> Path:
    """Refuse (FileExistsError naming the file) a head's record made from other runs (other config
    hashes by role) unless ``overwrite``; called before anything trains or is scored, and again
    when the record is written."""
    path = record_path(head, profile, root)
    if path.is_file() and not overwrite:
        found = read_json(path, "refiners record")
        rows = found.get("rows") if isinstance(found, dict) else None
        old = {role: row.get("config_hash") for role, row in rows.items() if isinstance(row, dict)} \
            if isinstance(rows, dict) else {}
        if old != dict(hashes):
            changed = sorted(role for role in set(old) | set(hashes) if old.get(role) != hashes.get(role))
            raise FileExistsError(f"{path} scores other runs (roles {changed} have other config hashes); "
                                  "pass overwrite=True to replace it, or out_dir to write elsewhere")
    return path


def write_record(record: dict, root: Path | str | None = None, overwrite: bool = False) -> Path:
    """``refiners/<head>.<profile>.json`` (atomic). A file made from other runs (other config
    hashes) is kept unless ``overwrite``; one from the same runs is replaced."""
    hashes = {role: row["config_hash"] for role, row in record["rows"].items()}
    path = check_record_free(record["head"], record["profile"], hashes, root, overwrite)
    atomic_write_json({k: v for k, v in record.items() if not k.startswith("_")}, path)
    return path


def load_records(profile: str, root: Path | str | None = None) -> dict[str, dict]:
    """Every head's record of ``profile`` under ``root`` (default results/), by head key."""
    from pna.analysis.refiner_heads import HEADS

    folder = Path(root or results_dir()) / "refiners"
    return {head: read_json(path, "refiners record") for head in HEADS
            if (path := folder / f"{head}.{profile}.json").is_file()}


def refiners_frame(records: Mapping[str, dict]) -> pd.DataFrame:
    """One line per (head, method): the paper's mIoU where it prints one, ours (%), and the cost."""
    lines = []
    for record in records.values():
        for method in METHODS:
            m = record["methods"][method]
            values = {"mIoU": m["mIoU"], "boundary_iou": m["boundary_iou"],
                      f"trimap {TRIMAP_SHOWN}px": m["trimap_miou"].get(TRIMAP_SHOWN), "boundary_f": m["boundary_f"]}
            line = {"head": record["title"], "method": method, PAPER: paper_miou(record["head"], method)}
            line.update({COLUMNS[k]: None if v is None else 100 * v for k, v in values.items()})
            line.update({"params (M)": m["params_m"], "GFLOPs": m["gflops"], "FPS": m["fps"]})
            lines.append(line)
    return pd.DataFrame(lines)


@dataclass(frozen=True)
class RefinerClaim:
    """``better`` beats ``worse`` in mIoU on a head (``at_least``: or ties); ``source``: whose claim."""

    better: str
    worse: str
    source: str
    at_least: bool = False

    @property
    def text(self) -> str:
        return f"{self.better} {'is at least as good as' if self.at_least else 'beats'} {self.worse} (mIoU)"


CLAIMS = (
    RefinerClaim("PNA P4", "P0 + SegFix", "paper, Table 4 (PNA above SegFix)"),
    RefinerClaim("P0 + SegFix", "PointRend", "paper, Table 4 (SegFix above PointRend)"),
    RefinerClaim("PNA P4", "PointRend", "paper, Tables 1, 3-7"),
    RefinerClaim("P0 + SegFix", "P0", "ours (SegFix's own claim)"),
    RefinerClaim("P0 + DenseCRF", "P0", "ours (DeepLab's claim)"),
    RefinerClaim("PNA P4 + SegFix", "PNA P4", "ours: are they complementary?", at_least=True),
)
# (head, better, worse) -> why the claim is not asserted at smoke scale: each failed in the committed
# smoke run (results/tables/refiners.smoke.md) for the reason given, or held by too thin a margin.
_POINTS = ("it held in the committed smoke run by 0.3-1.1 points only, a margin another CPU's rounding may turn: "
           "at 256 x 256 PointRend's 8196 points per subdivision step are every pixel of the DeepLabV3 maps "
           "(32 x 32, then 64 x 64) and 12-50% of the FPN ones (128 x 128, then 256 x 256), a dense stride-4 head; "
           "on a 1024 x 2048 Cityscapes image the last step re-classifies 6% of the pixels")
_SHIFT = ("SegFix only moves a boundary pixel's label 2 px: it cannot restore the thin parts (7-14 px) that a "
          "stride-16/32 P0 misses, which PointRend's stride-4 point head re-classifies")
_COMPLEMENT = ("SegFix shifts by 2 px every pixel it calls boundary (5 px on each side of a transition); with its "
               "smoke direction accuracy (about half of the 8 bins right) that breaks more of the boundaries PNA "
               "already placed than it fixes")
SMOKE_EXCEPTIONS: dict[tuple[str, str, str], str] = {
    **{(head, "P0 + SegFix", "PointRend"): _SHIFT for head in ("voc_fcn_os32", "cityscapes_deeplabv3", "cityscapes_fpn")},
    **{(head, "PNA P4", "PointRend"): _POINTS for head in ("voc_fcn_os32", "cityscapes_deeplabv3", "cityscapes_fpn")},
    **{(head, "PNA P4 + SegFix", "PNA P4"): _COMPLEMENT
       for head in ("voc_fcn_os32", "cityscapes_deeplabv3", "cityscapes_fpn")},
    ("cityscapes_fpn", "P0 + SegFix", "P0"): ("semantic FPN's P0 is at stride 4 already; SegFix's 2-px shift, with "
                                              "its smoke direction accuracy, moves more right labels than wrong ones"),
}


def check_refiner_claims(records: Mapping[str, dict]) -> pd.DataFrame:
    """One line per (head, claim), the columns of :func:`pna.analysis.claims.check_claims`."""
    lines = []
    for head, record in records.items():
        for claim in CLAIMS:
            a, b = (record["methods"][m]["mIoU"] for m in (claim.better, claim.worse))
            holds = bool(a >= b if claim.at_least else a > b)
            why = SMOKE_EXCEPTIONS.get((head, claim.better, claim.worse), "")
            lines.append({"claim": f"{record['title']}: {claim.text}", "holds": holds,
                          "measured": f"{claim.better} {100 * a:.1f} vs {claim.worse} {100 * b:.1f}",
                          "note": "" if holds or not why else f"does not hold here: {why}",
                          "must_hold_in_smoke": not why, "source": claim.source})
    return pd.DataFrame(lines)


def write_refiners_table(profile: str = "smoke", root: Path | str | None = None) -> tuple[pd.DataFrame, Path | None]:
    """``tables/refiners.<profile>.md`` from the heads' records (None: no record of ``profile``)."""
    from pna.analysis.report import markdown_table

    root = Path(root or results_dir())
    records = load_records(profile, root)
    frame = refiners_frame(records)
    if frame.empty:
        return frame, None
    scale = ("smoke scale: synthetic set, half-width ResNet-10 models, CPU; it shows the machinery and the "
             "direction of each refiner on data built for refinement, and is no estimate of the paper's numbers"
             if profile == "smoke" else "paper settings")
    first = next(iter(records.values()))
    notes = [f"- {r['title']}: {r['num_images']} {r['split']} images at {r['image_size'][0]}x{r['image_size'][1]}; "
             + ", ".join(f"{role} `{row['config']}` ({row['backbone'] or 'paper backbone'}, run {row['config_hash'][:8]})"
                         for role, row in r["rows"].items()) + (f"; {r['note']}" if r["note"] else "")
             for r in records.values()]
    claims = check_refiner_claims(records)
    claim_lines = [f"- {'holds' if c.holds else 'does not hold'}: {c.claim} - {c.measured} ({c.source})"
                   for c in claims.itertuples()]
    text = (f"# Refiners on the same coarse heads ({profile})\n\n_{scale}. PNA beside SegFix, DenseCRF and PointRend "
            f"on each head's own prediction P0, with the same metrics (pna/engine/boundary.py; trimap band "
            f"{TRIMAP_SHOWN} px); '{PAPER}': the paper's number for the method on that head (ResNet-101 on Cityscapes, "
            f"ResNet-50 on VOC; SegFix's quoted from its own paper), empty where it prints none. GFLOPs: the networks' forward passes at the test size (DenseCRF and SegFix's label "
            f"shift are not counted); FPS: batch 1 on {first['device']} with {first['cpu_threads']} threads, "
            f"post-processing included (a shared machine: indicative only). DenseCRF's parameters "
            f"{first['crf']} (DeepLab v2's by default); SegFix: offsets x {first['segfix']['offset_scale']} (docs/refiners.md)._\n\n"
            f"{markdown_table(frame, 1)}\n\nRuns:\n" + "\n".join(notes)
            + "\n\nClaims (the paper's ordering on the same head, and ours):\n" + "\n".join(claim_lines) + "\n")
    out = root / "tables" / f"refiners.{profile}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return frame, out


def refiners_figure(record: dict, root: Path | str | None = None, palette=None) -> Path:
    """The head's metrics per method (bars) over the crop where its methods differ most."""
    import matplotlib.pyplot as plt
    import numpy as np

    from pna.analysis.figures import colorize, save_figure

    crop = record["_crop"]
    palette = palette or crop["palette"]
    panels = [("image", crop["image"]), ("label", colorize(crop["label"], palette))]
    panels += [(m, colorize(crop["predictions"][m], palette)) for m in METHODS]
    fig = plt.figure(figsize=(2.0 * len(panels), 5.6))
    grid = fig.add_gridspec(2, len(panels), height_ratios=(1.3, 1))
    bars = fig.add_subplot(grid[0, :])
    frame = refiners_frame({record["head"]: record}).set_index("method")
    metrics = list(COLUMNS.values())
    x = np.arange(len(metrics))
    width = 0.8 / len(METHODS)
    for i, method in enumerate(METHODS):
        bars.bar(x + (i - (len(METHODS) - 1) / 2) * width, frame.loc[method, metrics].astype(float), width, label=method)
    bars.set_xticks(x, metrics)
    bars.set_ylabel("%")
    bars.set_ylim(0, 118)  # room above 100 for the legend
    bars.set_yticks(range(0, 101, 20))
    bars.legend(ncol=len(METHODS), fontsize="x-small", loc="upper center", frameon=False)
    bars.set_title(f"{record['title']} ({record['profile']}): every refiner on the same P0", fontsize="medium")
    for j, (title, picture) in enumerate(panels):
        ax = fig.add_subplot(grid[1, j])
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(title, fontsize="x-small")
        ax.set_axis_off()
    top, left, size = crop["box"]
    fig.text(0.5, 0.01, f"test image {crop['index']}, window {size}x{size} at ({top}, {left}): where the methods "
             "differ most", ha="center", fontsize="x-small")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    out = Path(root or results_dir()) / "figures" / f"refiners_{record['head']}.{record['profile']}.png"
    return save_figure(fig, out)
