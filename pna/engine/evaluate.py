"""Per-stage evaluation: mIoU and boundary quality of every prediction P0..P4 over a split.

Next to each stage's confusion matrix, :class:`pna.engine.boundary.BoundaryMetrics` accumulates
Boundary IoU, trimap mIoU and the boundary F-score (all stages of an image at once, the label's
share computed once; ``benchmarks/boundary.py`` measures what they add to an evaluation).

:func:`evaluate_model` scores a model on a dataset (whole images or sliding windows, sharded over
DDP ranks); :func:`evaluate_with_config` does it with a config's test protocol, and
:func:`evaluate_authors_checkpoint` scores a model the authors released as one of our rows
(``pna evaluate``, :mod:`pna.cli.evaluate`).

Example::

    >>> import torch
    >>> class Two(torch.nn.Module):   # a "model" with two stages that predicts class 1 everywhere
    ...     stage_names = ["P0", "P1"]
    ...     def forward(self, x, return_all=False):
    ...         logits = torch.zeros(x.shape[0], 2, 4, 4); logits[:, 1] = 1
    ...         return {"P0": logits, "P1": logits}
    >>> out = predict_stage_logits(Two(), torch.zeros(1, 3, 8, 8))
    >>> {k: tuple(v.shape) for k, v in out.items()}
    {'P0': (1, 2, 8, 8), 'P1': (1, 2, 8, 8)}
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pna.engine import distributed as dist
from pna.engine.boundary import BoundaryMetrics, BoundarySettings, update_stages
from pna.engine.loader import eval_loader
from pna.engine.metrics import ConfusionMatrix
from pna.models.resize import resize_to
from pna.models.segmentor import predict_at_input_size
from pna.engine.progress import track


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _stage_outputs(model: nn.Module, images: Tensor, stages: Sequence[str]) -> dict[str, Tensor]:
    # padding for backbones that need it (Swin: multiples of 32) happens there, cropped back
    return {name: logits.float() for name, logits in predict_at_input_size(model, images, stages).items()}


@torch.no_grad()
def predict_stage_logits(model: nn.Module, images: Tensor, mode: str = "whole",
                   crop: Sequence[int] = (512, 512), stride: Sequence[int] = (341, 341),
                   stages: Sequence[str] | None = None) -> dict[str, Tensor]:
    """Logits of each stage at the image size; ``mode="slide"`` averages overlapping windows.

    Windows are `crop` (h, w) every `stride`; the last row/column of windows is aligned with the
    border, and an image smaller than `crop` is zero-padded to it (the padding is cropped away).
    """
    stages = list(stages or _unwrap(model).stage_names)
    if mode == "whole":
        return _stage_outputs(model, images, stages)
    if mode != "slide":
        raise ValueError(f"mode must be 'whole' or 'slide', got {mode!r}")
    (ch, cw), (sh, sw) = crop, stride
    if min(ch, cw, sh, sw) < 1:
        raise ValueError(f"slide crop {crop} and stride {stride} must be positive")
    b, _, h, w = images.shape
    padded = F.pad(images, (0, max(cw - w, 0), 0, max(ch - h, 0)))
    ph, pw = padded.shape[-2:]
    tops = list(range(0, max(ph - ch, 0) + 1, sh))
    lefts = list(range(0, max(pw - cw, 0) + 1, sw))
    tops += [ph - ch] if tops[-1] != ph - ch else []
    lefts += [pw - cw] if lefts[-1] != pw - cw else []
    sums: dict[str, Tensor] = {}
    count = images.new_zeros(1, 1, ph, pw)
    for top in tops:
        for left in lefts:
            window = padded[..., top:top + ch, left:left + cw]
            for name, logits in _stage_outputs(model, window, stages).items():
                if name not in sums:
                    sums[name] = images.new_zeros(b, logits.shape[1], ph, pw)
                sums[name][..., top:top + ch, left:left + cw] += logits
            count[..., top:top + ch, left:left + cw] += 1
    return {name: (total / count)[..., :h, :w] for name, total in sums.items()}


@torch.no_grad()
def evaluate_model(model: nn.Module, dataset, device: torch.device | str = "cpu", mode: str = "whole",
                   crop: Sequence[int] = (512, 512), stride: Sequence[int] = (341, 341),
                   all_stages: bool = True, batch_size: int = 1, workers: int = 0,
                   progress: bool = False, boundary: BoundarySettings | None = BoundarySettings(),
                   authors_classes: Sequence[int] | None = None) -> dict:
    """mIoU and boundary metrics of each stage of `model` over `dataset` (sharded and reduced
    across DDP ranks); ``boundary=None`` skips the boundary metrics.

    Returns ``{"stages": {"P0": {"mIoU", "pixel_accuracy", "per_class_iou", "boundary_iou",
    "boundary_f", "trimap_miou"}, ...}, "final_stage": "P4", "mIoU": <final stage mIoU>,
    "num_images": n, "boundary_settings": {...}}``; every metric is a fraction.
    ``authors_classes``: each stage also gets ``mIoU_authors``, the number the authors' Detectron2
    evaluator gives with that class list (:meth:`ConfusionMatrix.miou_detectron2`), and one number
    per entry of the dataset's ``authors_readings`` (DeepGlobe: ``mIoU_authors_unknown_last``).
    """
    net = _unwrap(model)
    was_training = net.training
    net.eval()
    names = list(net.stage_names) if all_stages else [net.stage_names[-1]]
    classes = (dataset.num_classes, dataset.ignore_index, dataset.eval_classes, device)
    matrices = {n: ConfusionMatrix(*classes) for n in names}
    edges = {n: BoundaryMetrics(*classes, settings=boundary) for n in names} if boundary is not None else {}
    loader = eval_loader(dataset, batch_size, workers, dist.world_size(), dist.rank())
    for batch in track(loader, "eval", enabled=progress and dist.is_main()):
        images, labels = batch["image"], batch["label"]
        pairs = zip(images, labels) if isinstance(images, list) else [(images, labels)]
        for image, label in pairs:
            image = image.to(device).reshape(-1, *image.shape[-3:])
            label = label.to(device).reshape(-1, *label.shape[-2:])
            predictions = {}
            for name, logits in predict_stage_logits(net, image, mode, crop, stride, names).items():
                predictions[name] = resize_to(logits, label).argmax(1)
                matrices[name].update(predictions[name], label)
            if edges:  # every stage at once, the label's share computed once
                update_stages(edges, predictions, label)
    num_images = torch.tensor([len(loader.dataset)], device=device)
    if dist.is_initialized():
        torch.distributed.all_reduce(num_images)
    net.train(was_training)
    extra = None if authors_classes is None else list(authors_classes)
    readings = getattr(dataset, "authors_readings", None)  # another reading of their evaluator (DeepGlobe)
    stages = {n: m.reduce_().summary(list(dataset.classes), extra, readings) for n, m in matrices.items()}
    for name, metrics in edges.items():
        stages[name].update(metrics.reduce_().summary(list(dataset.classes)))
    result = {"stages": stages, "final_stage": names[-1], "mIoU": stages[names[-1]]["mIoU"],
              "num_images": int(num_images)}
    if boundary is not None:
        result["boundary_settings"] = boundary.to_dict()
    return result


def evaluate_with_config(model: nn.Module, dataset, cfg, device: torch.device | str = "cpu", workers: int = 0,
                         progress: bool = False, boundary: BoundarySettings | None = BoundarySettings()) -> dict:
    """:func:`evaluate_model` with the test protocol of ``cfg.eval`` (mode, crop, stride, batch);
    ``boundary=None`` scores mIoU only (the training loop's periodic evaluations). A SegFix network
    predicts no classes: it is scored on its own maps (:mod:`pna.engine.segfix_eval`)."""
    from pna.engine.segfix_eval import evaluate_segfix, is_segfix

    if is_segfix(model):
        return evaluate_segfix(model, dataset, device, workers, cfg.eval.mode, cfg.eval.crop, cfg.eval.stride)
    e = cfg.eval
    return evaluate_model(model, dataset, device, e.mode, e.crop, e.stride, batch_size=e.batch_size,
                          workers=workers, progress=progress, boundary=boundary, authors_classes=e.authors_classes)


def evaluate_authors_checkpoint(cfg, path: str | Path, device: torch.device | str = "cpu",
                                progress: bool = False) -> dict:
    """Per-stage mIoU of the authors' released file ``path`` scored as the row of ``cfg`` (its paper
    config, ``data.root`` set) on ``cfg``'s evaluation split. Returns :func:`evaluate_model`'s dict
    plus ``"authors_checkpoint"`` (file, config, branch, split, conversion summary)."""
    from pna.authors import load_authors_model
    from pna.engine.build import build_eval_set

    dataset = build_eval_set(cfg)
    model, report = load_authors_model(path, cfg.name)
    if progress and dist.is_main():
        print(report.summary(), flush=True)
    metrics = evaluate_with_config(model.to(device), dataset, cfg, device, progress=progress)
    metrics["authors_checkpoint"] = {"file": str(path), "config": cfg.name, "branch": report.branch,
                                     "split": cfg.data.eval_split, "conversion": report.summary()}
    return metrics


def with_boundary_metrics(run, cfg, device: torch.device) -> dict:
    """The finished run's record (``run``: a :class:`pna.engine.rundir.RunDir`), its final model scored
    again if it was evaluated before the boundary metrics existed: their keys are added to every stage (mIoU and everything else kept
    as recorded) and to the run's done.json."""
    record = run.record()
    stages = record["metrics"]["stages"]
    if all("boundary_iou" in stage for stage in stages.values()) or not run.final.is_file():
        return record
    from pna.engine.build import load_run
    from pna.engine.checkpoint import atomic_write_json

    if dist.is_main():
        print(f"{cfg.name} ({cfg.profile}): adding boundary metrics to the finished run in {run.path}", flush=True)
    model, dataset = load_run(run.path, cfg, device)
    fresh = evaluate_with_config(model, dataset, cfg, device)
    for name, stage in stages.items():
        stage.update({k: v for k, v in fresh["stages"][name].items() if k not in stage})
    record["metrics"]["boundary_settings"] = fresh["boundary_settings"]
    if dist.is_main():
        atomic_write_json(record, run.done)
    return record
