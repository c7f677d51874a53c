"""What a training run shows while it runs: ``log.jsonl``, TensorBoard (optional) and a callback.

The trainer hands every log entry to :class:`RunWatch` (rank 0 only). It appends the entry to the
run's ``log.jsonl``, passes it to ``on_log`` (a notebook's live curves, :mod:`pna.analysis.live_curves`)
and, with ``tensorboard``, writes it as scalars through ``torch.utils.tensorboard`` into the run
folder (``tensorboard --logdir runs`` shows every run by its folder name), step = iteration:

* ``loss/total``, ``loss/<output>`` (P0..P4, aux), ``train/lr``, ``train/grad_norm`` (after
  unscaling, before clipping), ``train/amp_scale`` (AMP only), ``train/images_per_s`` (the
  effective batch's images per second of wall time between two log lines, evaluations left out,
  data loading and checkpoints in), ``train/peak_memory_mb`` (CUDA: ``max_memory_allocated`` since
  the previous log line, as MMSeg's and Detectron2's loggers report it; CPU: the process's peak
  resident set, ``ru_maxrss``, which cannot be reset);
* at each evaluation ``mIoU/<stage>`` and ``boundary_IoU/<stage>``, and for two fixed validation
  images (the split's first and middle one) a strip ``predictions/val<index>``: the image, its label
  and P0..P4 in the dataset's colours.

A resumed run continues the same curves: its writer purges (``purge_step``) whatever the previous
process wrote after the checkpoint it resumes from, so each step keeps one value; :func:`merge_entry`
applies the same rule to ``log.jsonl``, which keeps every line. Without the ``tensorboard`` package
(``pip install 'pna[tensorboard]'``) training goes on after a one-line note.

Example::

    >>> entries = []
    >>> for e in [{"type": "train", "iter": 10}, {"type": "train", "iter": 20}, {"type": "train", "iter": 20}]:
    ...     merge_entry(entries, e)
    >>> [e["iter"] for e in entries]
    [10, 20]
"""
from __future__ import annotations

import json
import resource
import sys
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from pna.data.catalog import colorize
from pna.data.transforms import denormalize
from pna.engine import distributed as dist

STRIP_HEIGHT = 192     # pixels of each panel of a TensorBoard prediction strip (keeps event files small)
CAPTION_HEIGHT = 16    # the panel names above the strip
RSS_UNIT_BYTES = 1024  # getrusage's ru_maxrss is in kilobytes on Linux
INSTALL_HINT = "pip install 'pna[tensorboard]'"


def peak_memory(device: torch.device) -> tuple[float, str]:
    """Peak memory in MiB and what it measures (module docstring); CUDA's peak counter is reset."""
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**20
        torch.cuda.reset_peak_memory_stats(device)
        return peak, "cuda_max_allocated_since_last_log"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * RSS_UNIT_BYTES / 2**20, "cpu_peak_rss_of_process"


def merge_entry(entries: list[dict], entry: dict) -> None:
    """Append ``entry`` to ``entries`` (a run log read in order); a training entry at an iteration
    already logged starts a resumed process's segment: what the earlier process logged from that
    iteration on is dropped, so each iteration keeps the values of the process that went on."""
    if entry.get("type") == "train":
        logged = [e["iter"] for e in entries if e.get("type") == "train"]
        if logged and entry["iter"] <= max(logged):
            entries[:] = [e for e in entries if not isinstance(e.get("iter"), int) or e["iter"] < entry["iter"]]
    entries.append(entry)


def read_run_log(path: str | Path) -> list[dict]:
    """The entries of a run's ``log.jsonl``, one per iteration and kind (:func:`merge_entry`); a
    line cut short by a crash is skipped."""
    entries: list[dict] = []
    for line in Path(path).read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict):
            merge_entry(entries, entry)
    return entries


def eval_entry(iteration: int, metrics: dict, seconds: float) -> dict:
    """The log entry of an evaluation: mIoU and Boundary IoU per stage (fractions)."""
    stages = metrics["stages"]
    entry = {"type": "eval", "iter": iteration, "mIoU": {k: v["mIoU"] for k, v in stages.items()}}
    if all("boundary_iou" in v for v in stages.values()):
        entry["boundary_iou"] = {k: v["boundary_iou"]["mean"] for k, v in stages.items()}
    return {**entry, "seconds": seconds}


def open_writer(run_path: Path, purge_step: int, say: Callable[[str], None] = print):
    """A TensorBoard SummaryWriter into ``run_path`` (None, after a one-line note, without the package)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        say(f"note: TensorBoard is not installed ({INSTALL_HINT}); training goes on without its event files")
        return None
    return SummaryWriter(str(run_path), purge_step=purge_step)


class RunWatch:
    """Where the log entries of one training process go (module docstring). ``iteration`` and
    ``elapsed``: where this process starts (a resume continues the previous curves)."""

    def __init__(self, log_path: Path, device: torch.device, batch_size: int, iteration: int = 0,
                 elapsed: float = 0.0, tensorboard: bool = False, on_log: Callable[[dict], None] | None = None):
        self.log_path, self.device, self.batch_size, self.on_log = Path(log_path), device, batch_size, on_log
        self.last = (iteration, elapsed)  # the iteration and time of the previous training entry
        self.eval_seconds = 0.0           # evaluation time since then (left out of images per second)
        self.writer = open_writer(self.log_path.parent, iteration + 1) if tensorboard and dist.is_main() else None

    def step_stats(self, iteration: int, elapsed: float, grad_norm, scaler) -> dict:
        """The extra figures of a training entry: gradient norm, AMP scale, images/s, peak memory."""
        steps, seconds = iteration - self.last[0], elapsed - self.last[1] - self.eval_seconds
        self.last, self.eval_seconds = (iteration, elapsed), 0.0
        memory, kind = peak_memory(self.device)
        stats = {"grad_norm": None if grad_norm is None else float(grad_norm),
                 "images_per_s": round(self.batch_size * steps / seconds, 3) if seconds > 0 else None,
                 "peak_memory_mb": round(memory, 1), "memory": kind}
        if scaler.is_enabled():
            stats["amp_scale"] = float(scaler.get_scale())
        return stats

    def log(self, entry: dict) -> None:
        with open(self.log_path, "a") as f:
            f.write(json.dumps(entry) + "\n")
        if entry.get("type") == "eval":
            self.eval_seconds += entry.get("seconds") or 0.0
        if self.writer is not None:
            self._scalars(entry)
        if self.on_log is not None:
            self.on_log(entry)

    def _scalars(self, entry: dict) -> None:
        step, add = entry["iter"], self.writer.add_scalar
        if entry["type"] == "train":
            add("loss/total", entry["loss"], step)
            for name, value in entry["parts"].items():
                add(f"loss/{name}", value, step)
            for key in ("lr", "grad_norm", "amp_scale", "images_per_s", "peak_memory_mb"):
                if entry.get(key) is not None:
                    add(f"train/{key}", entry[key], step)
        elif entry["type"] == "eval":
            for key, tag in (("mIoU", "mIoU"), ("boundary_iou", "boundary_IoU")):
                for stage, value in entry.get(key, {}).items():
                    add(f"{tag}/{stage}", value, step)
            self.writer.flush()  # evaluations are rare: show them at once

    def show_predictions(self, model: torch.nn.Module, dataset, cfg, iteration: int) -> None:
        """The prediction strips of the two fixed validation images (TensorBoard only)."""
        if self.writer is None or len(dataset) == 0:
            return
        for index in sorted({0, len(dataset) // 2}):
            self.writer.add_image(f"predictions/val{index}", prediction_strip(model, dataset, index, cfg, self.device),
                                  iteration, dataformats="HWC")
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


@torch.no_grad()
def prediction_strip(model: torch.nn.Module, dataset, index: int, cfg, device: torch.device) -> np.ndarray:
    """Image | label | P0 .. P4 of ``dataset[index]`` with ``cfg``'s test protocol, in the dataset's
    colours, each panel :data:`STRIP_HEIGHT` pixels high, the names above: (H, W, 3) uint8."""
    from pna.engine.evaluate import predict_stage_logits

    sample = dataset[index]
    image, label = sample["image"], sample["label"].long()
    was_training = model.training
    model.eval()
    e = cfg.eval
    logits = predict_stage_logits(model, image[None].to(device), e.mode, e.crop, e.stride)
    model.train(was_training)
    height = STRIP_HEIGHT
    width = max(1, round(label.shape[-1] * height / label.shape[-2]))

    def nearest(ids: torch.Tensor) -> np.ndarray:
        return F.interpolate(ids[None, None].float(), size=(height, width), mode="nearest")[0, 0].long().cpu().numpy()

    photo = F.interpolate(denormalize(image.float())[None], size=(height, width), mode="bilinear", antialias=True)
    panels = {"image": (photo[0].permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255).astype(np.uint8),
              "label": colorize(nearest(label), dataset.palette, dataset.ignore_index)}
    for name, value in logits.items():
        ids = F.interpolate(value.float(), size=label.shape[-2:], mode="bilinear", align_corners=False).argmax(1)[0]
        panels[name] = colorize(nearest(ids), dataset.palette, dataset.ignore_index)
    return _captioned(panels)


def _captioned(panels: dict[str, np.ndarray]) -> np.ndarray:
    gap = np.full((next(iter(panels.values())).shape[0], 4, 3), 255, np.uint8)
    strip = np.concatenate([x for p in panels.values() for x in (p, gap)][:-1], axis=1)
    canvas = Image.new("RGB", (strip.shape[1], strip.shape[0] + CAPTION_HEIGHT), "white")
    canvas.paste(Image.fromarray(strip), (0, CAPTION_HEIGHT))
    draw, left = ImageDraw.Draw(canvas), 0
    for name, panel in panels.items():
        draw.text((left + 3, 1), name, fill="black", font=ImageFont.load_default(size=CAPTION_HEIGHT - 3))
        left += panel.shape[1] + gap.shape[1]
    return np.asarray(canvas)


def record_failure(log_path: Path, failed_path: Path, iteration: int | None, error: BaseException) -> None:
    """What a failed run leaves besides its last checkpoint: ``failed.json`` (atomic: the iteration,
    the error's type and first line) and a ``failed`` entry in ``log.jsonl``."""
    import time

    from pna.engine.checkpoint import atomic_write_json

    text = (str(error).splitlines() or [""])[0][:500]
    record = {"type": "failed", "iter": iteration, "error": f"{type(error).__name__}: {text}",
              "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic_write_json(record, failed_path)
    try:
        with open(log_path, "a") as f:
            f.write(json.dumps(record) + "\n")
    except OSError as problem:  # the record above is what `pna runs` reads; the log line is a courtesy
        print(f"note: could not append to {log_path}: {problem}", file=sys.stderr)
