"""One evaluation pass of every method of the refiners table on one coarse head
(:func:`evaluate_head`, called by :func:`pna.analysis.refiners.compare_refiners`).

Per test image: the head's P0 logits, PointRend's and PNA's final logits (each model's own test
protocol, at the label's size), the SegFix maps (:func:`pna.engine.segfix_eval.segfix_maps`), then
DenseCRF on P0's softmax and SegFix's shift of P0 and of PNA's P4; every method's labels go into a
confusion matrix and the boundary metrics. The image where the methods disagree most (a window of
a third of its short side) is kept for the figure (``record["_crop"]``, not written to JSON).
"""
from __future__ import annotations

import os
import time
from typing import Mapping

import torch
import torch.nn.functional as F

from pna.engine.boundary import BoundaryMetrics, update_stages
from pna.engine.build import load_run
from pna.engine.evaluate import predict_stage_logits
from pna.engine.metrics import ConfusionMatrix
from pna.engine.records import git_state
from pna.engine.segfix_eval import segfix_maps
from pna.models.resize import resize_to
from pna.refiners import DEEPLAB_V2, crf_refine, refine_with_segfix
from pna.refiners.segfix_offsets import BOUNDARY_THRESHOLD, OFFSET_SCALE

METHODS = ("P0", "P0 + DenseCRF", "P0 + SegFix", "PointRend", "PNA P4", "PNA P4 + SegFix")
# The seconds each method spends per image: the sum of these parts.
PARTS = {"P0": ("coarse",), "P0 + DenseCRF": ("coarse", "crf"), "P0 + SegFix": ("coarse", "segfix", "shift_p0"),
         "PointRend": ("pointrend",), "PNA P4": ("pna",), "PNA P4 + SegFix": ("pna", "segfix", "shift_p4")}
MODELS_OF = {"P0": ("coarse",), "P0 + DenseCRF": ("coarse",), "P0 + SegFix": ("coarse", "segfix"),
             "PointRend": ("pointrend",), "PNA P4": ("pna",), "PNA P4 + SegFix": ("pna", "segfix")}


class _Clock:
    """Seconds per part, CUDA synchronised; the first image is a warm-up and is not counted."""

    def __init__(self, device: torch.device):
        self.device, self.seconds, self.counting = device, {}, False

    def time(self, part: str, fn, *args):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        out = fn(*args)
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        if self.counting:
            self.seconds[part] = self.seconds.get(part, 0.0) + time.perf_counter() - start
        return out


def _logits(run, model, image: torch.Tensor, stage: str, size) -> torch.Tensor:
    e = run.config.eval
    return resize_to(predict_stage_logits(model, image, e.mode, e.crop, e.stride, [stage])[stage], size)


def _display(image: torch.Tensor, size) -> torch.Tensor:
    """The normalised image as uint8 RGB (H, W, 3) at ``size`` (DenseCRF's appearance kernel)."""
    from pna.data.transforms import denormalize

    rgb = denormalize(image.float())
    if tuple(rgb.shape[-2:]) != tuple(size):
        rgb = F.interpolate(rgb, size=tuple(size), mode="bilinear", align_corners=False)
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()


def _segfix_at(run, model, image: torch.Tensor, size) -> dict[str, torch.Tensor]:
    e = run.config.eval
    maps = segfix_maps(model, image, e.mode, e.crop, e.stride)
    if tuple(maps["boundary"].shape[-2:]) != tuple(size):
        maps = {"boundary": F.interpolate(maps["boundary"][:, None], size=tuple(size), mode="bilinear",
                                          align_corners=True)[:, 0],
                "direction": F.interpolate(maps["direction"], size=tuple(size), mode="bilinear", align_corners=True)}
    return maps


def _disagreement(preds: torch.Tensor, window: int) -> tuple[int, int, int]:
    """(count, top, left) of the ``window``-sized square with the most pixels where the methods differ."""
    differ = (preds != preds[:1]).any(0).float()[None, None]
    counts = F.avg_pool2d(differ, window, stride=max(1, window // 4)) * window * window
    best = int(counts.flatten().argmax())
    top, left = divmod(best, counts.shape[-1])
    return int(counts.max()), top * max(1, window // 4), left * max(1, window // 4)


def _costs(models: Mapping[str, torch.nn.Module], runs: Mapping, image: torch.Tensor, cache: dict) -> dict[str, dict]:
    """Params and FLOPs of each model at ``image``'s size; ``cache`` keeps them by (run, size) for the
    next head (SegFix serves every head of a dataset; a smoke PointRend run serves two)."""
    from pna.analysis.cost import count_flops, count_params

    costs = {}
    for role, model in models.items():
        key = (runs[role].config_hash, tuple(image.shape))
        if key not in cache:
            traced = _MapsOnly(model) if role == "segfix" else model
            cache[key] = {"params": count_params(model), "flops": count_flops(traced, image).total()}
        costs[role] = cache[key]
    return costs


class _MapsOnly(torch.nn.Module):
    """SegFix's eval forward as one tensor (fvcore traces tensor outputs)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, images):
        maps = self.net(images)
        return torch.cat([maps["boundary"], maps["direction"]], 1)


@torch.no_grad()
def evaluate_head(head, runs: Mapping, profile: str, device: torch.device, max_images: int | None = None,
                  crf=None, cost_cache: dict | None = None) -> dict:
    """Every method of :data:`METHODS` on ``head``'s test split (``runs``: role -> RunResult)."""
    crf, cost_cache = crf or DEEPLAB_V2, {} if cost_cache is None else cost_cache
    models, dataset = {}, None
    for role, run in runs.items():
        models[role], data = load_run(run.run_dir, run.config, device)
        dataset = data if role == "coarse" else dataset
    classes = (dataset.num_classes, dataset.ignore_index, dataset.eval_classes, device)
    matrices = {m: ConfusionMatrix(*classes) for m in METHODS}
    edges = {m: BoundaryMetrics(*classes) for m in METHODS}
    clock, count, crop, costs = _Clock(device), min(len(dataset), max_images or len(dataset)), None, None
    for index in range(count):
        item = dataset[index]
        image, label = item["image"][None].to(device), item["label"].to(device).long()
        size = label.shape[-2:]
        costs = costs or _costs(models, runs, image, cost_cache)
        clock.counting = index > 0 or count == 1
        coarse = clock.time("coarse", _logits, runs["coarse"], models["coarse"], image, "P0", size)
        p0 = coarse.argmax(1)
        pointrend = clock.time("pointrend", _logits, runs["pointrend"], models["pointrend"], image,
                               models["pointrend"].stage_names[-1], size).argmax(1)
        p4 = clock.time("pna", _logits, runs["pna"], models["pna"], image, "P4", size).argmax(1)
        maps = clock.time("segfix", _segfix_at, runs["segfix"], models["segfix"], image, size)
        crf_labels = clock.time("crf", crf_refine, _display(image, size).numpy(), coarse, crf)
        p0_fix = clock.time("shift_p0", refine_with_segfix, p0, maps["boundary"], maps["direction"])
        p4_fix = clock.time("shift_p4", refine_with_segfix, p4, maps["boundary"], maps["direction"])
        preds = dict(zip(METHODS, (p0, crf_labels, p0_fix, pointrend, p4, p4_fix)))
        for method, pred in preds.items():
            matrices[method].update(pred, label[None])
        update_stages(edges, preds, label[None])
        stacked = torch.cat(list(preds.values()))
        window = max(16, min(size) // 3)
        score, top, left = _disagreement(stacked, window)
        if crop is None or score > crop["score"]:
            box = (slice(top, top + window), slice(left, left + window))
            crop = {"score": score, "index": index, "box": [top, left, window], "palette": dataset.palette,
                    "image": _display(image, size)[0][box].numpy(), "label": label[box].cpu(),
                    "predictions": {m: p[0][box].cpu() for m, p in preds.items()}}
    timed = max(1, count - 1) if count > 1 else 1
    names = list(dataset.classes)
    methods = {}
    for method in METHODS:
        summary = {**matrices[method].summary(names), **edges[method].summary(names)}
        seconds = sum(clock.seconds.get(p, 0.0) for p in PARTS[method]) / timed
        used = MODELS_OF[method]
        methods[method] = {"mIoU": summary["mIoU"], "boundary_iou": summary["boundary_iou"]["mean"],
                           "boundary_f": summary["boundary_f"]["mean"], "trimap_miou": summary["trimap_miou"],
                           "per_class_iou": summary["per_class_iou"],
                           "params_m": sum(costs[r]["params"] for r in used) / 1e6,
                           "gflops": sum(costs[r]["flops"] for r in used) / 1e9,
                           "seconds_per_image": seconds, "fps": 1.0 / seconds if seconds > 0 else None}
    rows = {role: {"config": run.config.name, "config_hash": run.config_hash, "run_dir": str(run.run_dir),
                   "backbone": run.config.model.overrides.get("backbone"), "trained_on": run.config.data.dataset,
                   "iterations": run.config.train.iters} for role, run in runs.items()}
    return {"head": head.key, "title": head.title, "note": head.notes(profile), "profile": profile, "rows": rows,
            "methods": methods, "num_images": count, "image_size": list(size), "split": runs["coarse"].config.data.eval_split,
            "segfix": {"offset_scale": OFFSET_SCALE, "boundary_threshold": BOUNDARY_THRESHOLD,
                       "own_metrics": runs["segfix"].metrics.get("segfix")},
            "crf": crf.to_dict(), "device": str(device), "cpu_threads": torch.get_num_threads(),
            "load_avg_1min": os.getloadavg()[0], "torch": torch.__version__, **git_state(),
            "crop": {k: crop[k] for k in ("index", "box")}, "_crop": crop}
