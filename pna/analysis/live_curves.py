"""Live training curves in a notebook: while :func:`pna.analysis.experiments.run_rows` trains a row,
its cell shows the loss of every output (P0..P4, aux, total) and the evaluation points (mIoU and
Boundary IoU per stage), redrawn in place.

The curves are read from the run's ``log.jsonl`` (:func:`pna.engine.watch.merge_entry`: a resumed
run's history is included, each iteration once), whether the row trains in the notebook's own
process (the trainer's ``on_log`` calls :meth:`LiveCurves.poll`) or through torchrun (rank 0 writes
the log on the shared run folder; :func:`pna.engine.launch.launch`'s ``on_tick`` polls it). The
picture is a PNG in one display, updated through IPython's display handle at most every
:data:`UPDATE_S` seconds and once at the end, so an executed notebook (papermill, nbval) keeps the
final picture and training is not slowed (one drawing takes ~0.1-0.2 s on the 2-core CPU). Outside
a kernel (a terminal, ``pna train``) it does nothing.

Example::

    >>> live = LiveCurves("demo", "log.jsonl", total=100, enabled=False)
    >>> live.poll(); live.close()      # no kernel: nothing is read or drawn
"""
from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

from pna.engine.progress import in_kernel
from pna.engine.watch import merge_entry

UPDATE_S = 10.0     # the least time between two drawings while training
FIGURE_DPI = 80


def draw_curves(entries: list[dict], title: str):
    """A matplotlib Figure (object API: nothing is shown by itself): the loss of every output against
    iteration (left) and the evaluations' mIoU (solid) and Boundary IoU (dashed) per stage (right)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 3.4), dpi=FIGURE_DPI)
    losses, scores = fig.subplots(1, 2)
    train = [e for e in entries if e.get("type") == "train"]
    evals = [e for e in entries if e.get("type") == "eval"]
    steps = [e["iter"] for e in train]
    if train:
        losses.plot(steps, [e["loss"] for e in train], color="black", linewidth=2, label="total")
        for name in train[-1]["parts"]:
            losses.plot(steps, [e["parts"].get(name, float("nan")) for e in train], linewidth=1, label=name)
        losses.legend(fontsize="x-small", ncol=2)
    losses.set(xlabel="iteration", ylabel="loss", title="training loss")
    colours = {}
    for key, style in (("mIoU", "-o"), ("boundary_iou", "--s")):
        for stage in (evals[-1].get(key, {}) if evals else {}):
            line, = scores.plot([e["iter"] for e in evals], [100 * e.get(key, {}).get(stage, float("nan")) for e in evals],
                                style, markersize=4, color=colours.get(stage),
                                label=f"{stage} {'mIoU' if key == 'mIoU' else 'Boundary IoU'}")
            colours[stage] = line.get_color()
    if evals:
        scores.legend(fontsize="x-small", ncol=2)
    else:
        scores.text(0.5, 0.5, "no evaluation yet", ha="center", va="center", transform=scores.transAxes)
    scores.set(xlabel="iteration", ylabel="%", title="evaluations")
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout()
    return fig


class LiveCurves:
    """The live picture of one run's ``log.jsonl`` (module docstring); ``enabled`` None: in a kernel only."""

    def __init__(self, title: str, log_path: str | Path, total: int, enabled: bool | None = None,
                 every: float = UPDATE_S):
        self.title, self.log_path, self.total, self.every = title, Path(log_path), total, every
        self.enabled = in_kernel() if enabled is None else enabled
        self.entries: list[dict] = []
        self.offset, self.identity, self.drawn_at, self.changed = 0, None, 0.0, False
        self.handle = None

    def poll(self, *_) -> None:
        """Read what the log gained since the last call; redraw if :data:`UPDATE_S` s have passed.
        (Any arguments are ignored: it is also the trainer's ``on_log`` callback.)"""
        if not self.enabled:
            return
        self._read()
        if self.changed and time.monotonic() - self.drawn_at >= self.every:
            self.draw()

    def _read(self) -> None:
        try:
            stat = os.stat(self.log_path)
        except FileNotFoundError:
            return
        if (stat.st_ino, stat.st_dev) != self.identity or stat.st_size < self.offset:  # a new log (a fresh start)
            self.entries, self.offset, self.identity = [], 0, (stat.st_ino, stat.st_dev)
        with open(self.log_path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        complete = data[: data.rfind(b"\n") + 1]  # a line being written is read next time
        self.offset += len(complete)
        for line in complete.decode("utf-8", errors="replace").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict):
                merge_entry(self.entries, entry)
                self.changed = True

    def draw(self) -> None:
        """Draw the curves now (in place of the previous picture)."""
        from IPython.display import Image, display

        done = max([e["iter"] for e in self.entries if isinstance(e.get("iter"), int)] or [0])
        fig = draw_curves(self.entries, f"{self.title}: iteration {done} of {self.total}")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        picture = Image(data=buffer.getvalue())
        if self.handle is None:
            self.handle = display(picture, display_id=True)
        else:
            self.handle.update(picture)
        self.drawn_at, self.changed = time.monotonic(), False

    def close(self) -> None:
        """The final picture (if anything was logged since the last drawing)."""
        if self.enabled:
            self._read()
            if self.changed:
                self.draw()

    def __enter__(self) -> "LiveCurves":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def live_curves(cfg, enabled: bool | None = None) -> LiveCurves:
    """The live curves of ``cfg``'s run (its folder under ``runs/``, by config hash)."""
    from pna.configs import config_hash
    from pna.engine.rundir import default_run_dir

    run = default_run_dir(cfg.model.name, cfg.profile, config_hash(cfg))
    return LiveCurves(f"{cfg.table} / {cfg.row} ({cfg.profile})", run / "log.jsonl", cfg.train.iters, enabled)
