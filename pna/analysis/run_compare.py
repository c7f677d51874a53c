"""Runs side by side (``pna runs compare RUN RUN ...``, or :func:`compare_runs` in a notebook): their
training loss and evaluation curves, and their final per-stage metrics as bars and as a markdown table.

Each run is read from its folder (``log.jsonl``, ``done.json``: :mod:`pna.runs.index`), so
unfinished runs compare too (their curves so far, no final metrics).

Example::

    >>> stage_metrics({"stages": {"P0": {"mIoU": 0.5, "boundary_iou": {"mean": 0.25}}}})
    {'P0': (50.0, 25.0)}
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from pna.engine.watch import read_run_log
from pna.paths import read_json
from pna.runs.index import RunInfo, find_run, run_info


def stage_metrics(metrics: dict) -> dict[str, tuple[float, float | None]]:
    """``{stage: (mIoU %, Boundary IoU % or None)}`` of a run's final metrics."""
    out = {}
    for name, stage in metrics["stages"].items():
        biou = stage.get("boundary_iou")
        out[name] = (100 * stage["mIoU"], None if biou is None else 100 * biou["mean"])
    return out


def _final(info: RunInfo) -> dict[str, tuple[float, float | None]]:
    done = info.path / "done.json"
    return stage_metrics(read_json(done, "finished run's record")["metrics"]) if info.status == "finished" else {}


def compare_table(infos: Sequence[RunInfo]) -> str:
    """Markdown: one line per run, mIoU and Boundary IoU (%) of every stage."""
    finals = [_final(i) for i in infos]
    stages = list(dict.fromkeys(s for f in finals for s in f))
    head = ["run", "row", "status", *(f"{s} mIoU" for s in stages), *(f"{s} B-IoU" for s in stages)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for info, final in zip(infos, finals):
        cells = [f"`{info.name}`", info.row, info.detail.replace("|", "/")]
        cells += [f"{final[s][0]:.1f}" if s in final else "-" for s in stages]
        cells += [f"{final[s][1]:.1f}" if s in final and final[s][1] is not None else "-" for s in stages]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_figure(infos: Sequence[RunInfo]):
    """Three panels: training loss, the final stage's evaluation mIoU over iterations, final mIoU per stage."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(15, 4.2), dpi=100)
    loss, evals, bars = fig.subplots(1, 3)
    finals = [_final(i) for i in infos]
    stages = list(dict.fromkeys(s for f in finals for s in f))
    width = 0.8 / max(1, len(infos))
    for k, (info, final) in enumerate(zip(infos, finals)):
        entries = read_run_log(info.path / "log.jsonl") if (info.path / "log.jsonl").is_file() else []
        train = [e for e in entries if e.get("type") == "train"]
        scored = [e for e in entries if e.get("type") == "eval" and e.get("mIoU")]
        label = f"{k + 1}: {info.name}"
        line, = loss.plot([e["iter"] for e in train], [e["loss"] for e in train], linewidth=1.2, label=label)
        if scored:
            last = list(scored[-1]["mIoU"])[-1]
            evals.plot([e["iter"] for e in scored], [100 * e["mIoU"].get(last, float("nan")) for e in scored], "-o",
                       color=line.get_color(), markersize=4, label=f"{k + 1}: {last}")
        xs = [stages.index(s) + (k - (len(infos) - 1) / 2) * width for s in final]
        bars.bar(xs, [final[s][0] for s in final], width=width, color=line.get_color(), label=f"{k + 1}")
    loss.set(xlabel="iteration", ylabel="training loss (total)", title="training loss")
    loss.legend(fontsize="x-small")
    evals.set(xlabel="iteration", ylabel="mIoU %", title="evaluations (final stage)")
    if evals.lines:
        evals.legend(fontsize="x-small")
    bars.set_xticks(range(len(stages)), stages)
    bars.set(ylabel="mIoU %", title="final mIoU per stage (finished runs)")
    if stages:
        bars.legend(fontsize="x-small", title="run")
    fig.tight_layout()
    return fig


def compare_runs(runs: Sequence[str | Path], root: str | Path | None = None,
                 out: str | Path | None = None) -> tuple[object, str]:
    """The comparison figure and markdown table of ``runs`` (folder names, unique starts of them, or
    paths; :func:`pna.runs.index.find_run`); with ``out``, written as ``<out>.png`` and ``<out>.md``."""
    if len(runs) < 1:
        raise ValueError("compare: name at least one run")
    infos = [run_info(find_run(str(r), root)) for r in runs]
    fig, table = compare_figure(infos), compare_table(infos)
    if out is not None:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(f"{out}.png", bbox_inches="tight")
        Path(f"{out}.md").write_text(table + "\n")
    return fig, table
