"""Boundary metrics for semantic segmentation, streamed over a dataset like the confusion matrix:
Boundary IoU, trimap mIoU and the boundary F-score, per class, on the evaluation device.

PNA's stages exist to place boundaries and thin parts that a stride-32 prediction cannot; mIoU is
dominated by region interiors, so refinement work (CascadePSP, SegFix, BPR) measures boundaries
directly. No well-kept library computes these for semantic segmentation: torchmetrics has released
no boundary metric, the Boundary IoU reference code covers instance and panoptic segmentation
only, and mmsegmentation declined one. So they are written here, in torch on the evaluation
device (batched, no round trip to scipy on the CPU), on :mod:`pna.engine.morphology`. Distances
are chessboard distances (a square window), which is the reference definition itself (``d``
erosions by a 3x3 square), not an approximation of a disk.

* **Boundary IoU** (Cheng et al., CVPR 2021). The boundary region of a binary mask M is M minus
  its erosion by ``d``, the erosion padding with background: the mask pixels within chessboard
  distance ``d`` of a pixel outside M, the outside of the image included (so a mask touching the
  image border has boundary along it), exactly the reference's ``d`` repeated 3x3 erosions.
  ``d = round(dilation_ratio * image diagonal)``, at least 1 px (ratio 0.02 as in Cheng et al.),
  per image. ``BIoU_c = |G_d & P_d| / |G_d | P_d|`` over the boundary regions of class c in label
  and prediction, intersections and unions summed over the dataset.
* **Trimap mIoU** (the band evaluation of Kohli et al. 2009, used by DeepLab): mIoU over the
  pixels within ``w`` px of a label transition, for each width ``w`` at the label's resolution
  (default 1, 2, 4, 8, 16, 32). A transition lies between two differently labelled pixels: the
  image border is not one.
* **Boundary F-score** (Csurka et al., BMVC 2013). A class's contour is its pixels with an
  8-neighbour of another label (again the border is not a contour). A predicted contour pixel is
  correct if a label contour pixel of the same class lies within ``tolerance`` px, and vice versa;
  precision and recall are summed over the dataset per class, ``F = 2PR / (P + R)``. The tolerance
  is ``round(0.0075 * diagonal)``, at least 1 px (the BF score's 0.75% of the diagonal), and a
  square (chessboard) neighbourhood like the other two metrics, a little wider than a disk.

Edge cases, as in :class:`pna.engine.metrics.ConfusionMatrix`: a class absent from labels and
predictions everywhere has no value and is left out of the mean (so is a class with no contour
anywhere for the F-score); the mean is over ``eval_classes``. Ignored pixels (``ignore_index``)
belong to no class in label *and* prediction (the prediction there is not counted), so they are
never boundary; a class region next to them has boundary there, as at the image border, and a
prediction equal to the label on every evaluated pixel scores 100. In an image at most ``2d`` px
on a side every pixel is within ``d`` of the border: every mask is all boundary (the reference's
erosion empties it) and Boundary IoU equals IoU.

Cost: the label's share (its boundary region, contours, bands) is computed once per image for all
stages (:class:`LabelMaps`), and :func:`update_stages` stacks the stages so that each operation
serves all of them; there is no per-class loop (:mod:`pna.engine.boundary_maps`).
``benchmarks/boundary.py`` measures what the metrics add to an evaluation at Cityscapes' size
(``results/benchmarks/boundary_cpu.csv``).

Example::

    >>> import torch
    >>> label = torch.zeros(8, 8, dtype=torch.long); label[:, 4:] = 1
    >>> m = BoundaryMetrics(num_classes=2)
    >>> m.update(label.clone(), label)
    >>> m.boundary_iou().tolist(), m.trimap_miou()[1], m.boundary_f().tolist()
    ([1.0, 1.0], 1.0, [1.0, 1.0])
"""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor

from pna.engine.boundary_maps import (DILATION_RATIO, F_TOLERANCE_RATIO, TRIMAP_WIDTHS, BoundarySettings,  # noqa: F401
                                      HistogramKey, LabelMaps, pixels_of, stage_histograms)


def _ratio(numerator: Tensor, denominator: Tensor) -> Tensor:
    num, den = numerator.double(), denominator.double()
    return torch.where(den > 0, num / den.clamp(min=1), torch.full_like(den, float("nan")))


class BoundaryMetrics:
    """Boundary IoU, trimap mIoU and boundary F-score of one prediction stage over a dataset.

    Counters are int64 on ``device`` and add up over batches and processes (:meth:`reduce_`).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, eval_classes: Sequence[int] | None = None,
                 device: torch.device | str = "cpu", settings: BoundarySettings = BoundarySettings()):
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes, self.ignore_index, self.settings = num_classes, ignore_index, settings
        self.eval_classes = list(range(num_classes)) if eval_classes is None else list(eval_classes)
        bad = [c for c in self.eval_classes if not 0 <= c < num_classes]
        if bad:
            raise ValueError(f"eval_classes {bad} outside [0, {num_classes})")
        zeros = lambda *shape: torch.zeros(*shape, dtype=torch.int64, device=device)  # noqa: E731
        self.biou = zeros(2, num_classes)  # intersection, union of the boundary regions
        self.trimap = zeros(len(settings.trimap_widths), num_classes, num_classes)  # confusion per band
        self.contours = zeros(4, num_classes)  # predicted: matched, all; label: matched, all
        self._key = HistogramKey(num_classes, len(settings.trimap_widths))
        if self._key.bins >= 2 ** 31:  # the key is an int32 map
            raise ValueError(f"{num_classes} classes and {len(settings.trimap_widths)} trimap widths need "
                             f"{self._key.bins} histogram bins; at most 2**31 - 1 are supported")

    def label_maps(self, label: Tensor) -> LabelMaps:
        """The label's share of the work, to hand to :meth:`update` for every stage of one batch."""
        return LabelMaps(label, self.num_classes, self.ignore_index, self.settings, self.biou.device)

    def update(self, prediction: Tensor, label: Tensor | LabelMaps) -> None:
        """Add a batch: ``prediction`` class ids (N, H, W) or (H, W), ``label`` of that shape (or
        its :meth:`label_maps`, computed once for all stages; :func:`update_stages` adds every
        stage at once)."""
        update_stages({"stage": self}, {"stage": prediction}, label)

    def check(self, ref: LabelMaps, prediction: Tensor) -> None:
        if ref.num_classes != self.num_classes or ref.settings != self.settings:
            raise ValueError("label maps were made for other classes or boundary settings")
        if prediction.shape[-2:] != ref.codes.shape[-2:] or prediction.numel() != ref.codes.numel():
            raise ValueError(f"prediction shape {tuple(prediction.shape)} != label shape {tuple(ref.codes.shape)}")

    def add(self, hist: Tensor, pred_hist: Tensor) -> None:
        """Add one stage's histograms (:func:`pna.engine.boundary_maps.stage_histograms`)."""
        c = self.num_classes
        self.trimap += hist[:-1].sum((1, 2, 3))[..., :c].cumsum(0)  # band k: the pixels of levels 0..k
        per_label = hist.sum(-1)  # (level, label boundary, inter, label contour state, label class)
        inter = per_label[:, :, 1].sum((0, 1, 2))
        self.biou[0] += inter
        self.biou[1] += per_label[:, 1].sum((0, 1, 2)) + pred_hist[1].sum(0) - inter
        self.contours[0] += pred_hist[:, 2].sum(0)
        self.contours[1] += pred_hist[:, 1:].sum((0, 1))
        self.contours[2] += per_label[:, :, :, 2].sum((0, 1, 2))
        self.contours[3] += per_label[:, :, :, 1:].sum((0, 1, 2, 3))

    def boundary_iou(self) -> Tensor:
        """Per-class Boundary IoU (float64); NaN for a class absent from labels and predictions."""
        return _ratio(self.biou[0], self.biou[1])

    def trimap_iou(self) -> Tensor:
        """(widths, classes) IoU inside each band; NaN where a class is absent from the band."""
        m = self.trimap.double()
        tp = m.diagonal(dim1=1, dim2=2)
        return _ratio(tp, m.sum(1) + m.sum(2) - tp)

    def trimap_miou(self) -> dict[int, float]:
        """{width: mIoU over ``eval_classes`` inside the band of that width}."""
        return {w: self._mean(row) for w, row in zip(self.settings.trimap_widths, self.trimap_iou())}

    def boundary_f(self) -> Tensor:
        """Per-class boundary F-score; 0 when one side has contours and the other none, NaN when
        neither has any."""
        precision = _ratio(self.contours[0], self.contours[1]).nan_to_num(0.0)
        recall = _ratio(self.contours[2], self.contours[3]).nan_to_num(0.0)
        f = torch.where(precision + recall > 0, 2 * precision * recall / (precision + recall).clamp(min=1e-12),
                        torch.zeros_like(precision))
        return torch.where(self.contours[1] + self.contours[3] > 0, f, torch.full_like(f, float("nan")))

    def _mean(self, values: Tensor) -> float:
        values = values[self.eval_classes]
        values = values[~values.isnan()]
        return float(values.mean()) if len(values) else float("nan")

    def reduce_(self) -> "BoundaryMetrics":
        """Sum the counters over all processes of an initialised torch.distributed group."""
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for counts in (self.biou, self.trimap, self.contours):
                torch.distributed.all_reduce(counts)
        return self

    def summary(self, class_names: Sequence[str] | None = None) -> dict:
        """JSON-ready, fractions like mIoU: ``boundary_iou`` and ``boundary_f`` (mean, per_class by
        name over ``eval_classes``), ``trimap_miou`` ({width: mIoU})."""
        names = list(class_names or [str(i) for i in range(self.num_classes)])

        def per_class(values: Tensor) -> dict:
            return {"mean": self._mean(values),
                    "per_class": {names[c]: None if values[c].isnan() else float(values[c]) for c in self.eval_classes}}

        return {"boundary_iou": per_class(self.boundary_iou()), "boundary_f": per_class(self.boundary_f()),
                "trimap_miou": {str(w): v for w, v in self.trimap_miou().items()}}


def update_stages(metrics: Mapping[str, BoundaryMetrics], predictions: Mapping[str, Tensor],
                  label: Tensor | LabelMaps, stacked: bool | None = None) -> None:
    """Add one batch of every stage: ``predictions[name]`` to ``metrics[name]`` (same classes and
    settings), the label's maps computed once for all of them.

    ``stacked``: run every operation once on the stacked stages (default on CUDA: fewer kernel
    launches) or stage by stage (default elsewhere: on a CPU the stacked 1024x2048 maps outgrow
    what the allocator keeps for reuse, and fresh pages cost more than the saved calls; measured
    with ``benchmarks/boundary.py``, one thread: x1.47 CPU time stacked, x1.15 stage by stage).
    """
    first = next(iter(metrics.values()))
    ref = label if isinstance(label, LabelMaps) else first.label_maps(label)
    for name, m in metrics.items():
        m.check(ref, predictions[name])
    stacked = ref.codes.device.type == "cuda" if stacked is None else stacked
    names = list(metrics)
    groups = [names] if stacked else [[name] for name in names]
    for group in groups:
        histograms = stage_histograms([predictions[name] for name in group], ref, first._key)
        for name, (hist, pred_hist) in zip(group, histograms):
            metrics[name].add(hist, pred_hist)
