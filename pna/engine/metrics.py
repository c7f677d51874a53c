"""Confusion-matrix segmentation metrics: per-class IoU and mIoU over a class subset.

Example::

    >>> import torch
    >>> cm = ConfusionMatrix(num_classes=3)
    >>> cm.update(torch.tensor([[0, 1], [2, 2]]), torch.tensor([[0, 1], [2, 255]]))
    >>> cm.miou()
    1.0
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch


class ConfusionMatrix:
    """Accumulates a (num_classes x num_classes) matrix: rows are labels, columns predictions.

    Pixels whose label is `ignore_index` (or outside [0, num_classes)) are not counted.
    `eval_classes` restricts the mean to a subset (DeepGlobe: 6 of 7, Trans10k: things and stuff);
    a class that never appears in labels or predictions has an undefined IoU and is left out.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255,
                 eval_classes: list[int] | None = None, device: torch.device | str = "cpu"):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.eval_classes = list(range(num_classes)) if eval_classes is None else list(eval_classes)
        bad = [c for c in self.eval_classes if not 0 <= c < num_classes]
        if bad:
            raise ValueError(f"eval_classes {bad} outside [0, {num_classes})")
        self.matrix = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)

    def update(self, prediction: torch.Tensor, label: torch.Tensor) -> None:
        """Add a batch: `prediction` class ids (any shape), `label` of the same shape."""
        if prediction.shape != label.shape:
            raise ValueError(f"prediction shape {tuple(prediction.shape)} != label shape {tuple(label.shape)}")
        label = label.reshape(-1).to(self.matrix.device).long()
        prediction = prediction.reshape(-1).to(self.matrix.device).long()
        keep = (label != self.ignore_index) & (label >= 0) & (label < self.num_classes)
        index = label[keep] * self.num_classes + prediction[keep].clamp(0, self.num_classes - 1)
        self.matrix += torch.bincount(index, minlength=self.num_classes ** 2).view(self.num_classes, -1)

    def iou(self) -> torch.Tensor:
        """Per-class IoU (float64); NaN for a class absent from both labels and predictions."""
        m = self.matrix.double()
        true_positive = m.diag()
        union = m.sum(0) + m.sum(1) - true_positive
        return torch.where(union > 0, true_positive / union.clamp(min=1), torch.full_like(union, float("nan")))

    def miou(self) -> float:
        """Mean IoU over `eval_classes`, ignoring undefined (NaN) classes; NaN if none is defined."""
        values = self.iou()[self.eval_classes]
        values = values[~values.isnan()]
        return float(values.mean()) if len(values) else float("nan")

    def miou_detectron2(self, classes: list[int]) -> float:
        """mIoU as Detectron2's ``SemSegEvaluator`` computes it over its class list ``classes``:
        pixels labelled or predicted outside ``classes`` are dropped, and the mean is over the
        classes present in the labels (the authors' DeepGlobe and Trans10k numbers)."""
        index = torch.as_tensor(list(classes), device=self.matrix.device)
        m = self.matrix[index][:, index].double()
        true_positive, labelled = m.diag(), m.sum(1)
        union = labelled + m.sum(0) - true_positive
        valid = (labelled > 0) & (union > 0)
        return float((true_positive[valid] / union[valid]).mean()) if valid.any() else float("nan")

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(self.matrix.diag().sum().double() / total) if total > 0 else float("nan")

    def reduce_(self) -> "ConfusionMatrix":
        """Sum the matrix over all processes of an initialised torch.distributed group."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(self.matrix)
        return self

    def summary(self, class_names: list[str] | None = None, authors_classes: list[int] | None = None,
                other_readings: Mapping[str, Sequence[int]] | None = None) -> dict:
        """JSON-ready: mIoU, pixel accuracy and per-class IoU (by name) over `eval_classes`; with
        ``authors_classes`` also ``mIoU_authors``, :meth:`miou_detectron2` over them, and one more
        number per entry of ``other_readings`` (name -> class list: another reading of their evaluator)."""
        names = class_names or [str(i) for i in range(self.num_classes)]
        iou = self.iou()
        out = {
            "mIoU": self.miou(),
            "pixel_accuracy": self.pixel_accuracy(),
            "per_class_iou": {names[c]: (None if iou[c].isnan() else float(iou[c])) for c in self.eval_classes},
        }
        if authors_classes is not None:
            out["mIoU_authors"] = self.miou_detectron2(authors_classes)
            out.update({name: self.miou_detectron2(classes) for name, classes in (other_readings or {}).items()})
        return out
