"""Weighted cross-entropy over every prediction of a Segmentor (P0..P4, aux), ignore 255,
optional hard-pixel mining.

The two code bases the authors trained with average a dense cross-entropy differently
(docs/authors_settings.md, "Loss"): MMSeg 0.27 divides the summed per-pixel loss by every pixel of
the batch, ignored and padded ones included (``mean_over="all"``); Detectron2 averages over the
labelled pixels (``mean_over="valid"``) and, where configured, over the top 20 % of all pixels of
each GPU's batch (``hard_pixel_fraction``, ``hard_pixel_chunk``).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .pointrend import point_cross_entropy
from .resize import resize_to
from .segfix import OUTPUT as SEGFIX_OUTPUT, segfix_term

DEFAULT_STAGE_WEIGHTS = {"P0": 1.0, "P1": 0.1, "P2": 0.1, "P3": 0.1, "P4": 0.1}
MEAN_OVER = ("valid", "all")

# An extra output kind (e.g. PointRend's {"point_logits", "point_coords"}) brings its own loss:
# term(output, labels, criterion) -> scalar, registered under the output's name.
LossTerm = Callable[[Any, Tensor, "SegmentationLoss"], Tensor]


def point_term(points: Mapping[str, Tensor], labels: Tensor, criterion: "SegmentationLoss") -> Tensor:
    """PointRend's point loss: CE of ``points["logits"]`` (B, C, N) against the labels read (nearest)
    at ``points["coords"]`` (B, N, 2)."""
    return point_cross_entropy(points, labels, criterion.ignore_index)


# Output kinds every SegmentationLoss knows (weight, term); ``extra_terms`` adds to / replaces these.
# SegFix's output brings its own two-part loss (pna.models.segfix.segfix_loss), weight 1.
DEFAULT_EXTRA_TERMS: dict[str, tuple[float, LossTerm]] = {"points": (1.0, point_term), SEGFIX_OUTPUT: (1.0, segfix_term)}


class SegmentationLoss(nn.Module):
    """``total = sum_name weight[name] * CE(upsample(outputs[name]), labels)``; returns (total, parts).

    Weights: P0 1.0, P1..P4 0.1 each (``stage_weights`` replaces these), aux ``aux_weight``.
    ``mean_over``: ``"valid"`` averages the pixel losses over the labelled pixels (Detectron2,
    PyTorch's default); ``"all"`` divides their sum by ALL pixels of the batch, ignored ones counting
    0 in the sum and 1 in the count (MMSeg 0.27's ``avg_non_ignore=False``).
    ``hard_pixel_fraction`` (e.g. 0.2) averages only the largest pixel losses of the outputs named in
    ``hard_pixel_outputs`` (None: every dense output), as the authors' Detectron2 branch does: k is
    that fraction of ALL pixels (ignored ones included, their loss counting as 0), and the loss is the
    mean of the k largest. ``hard_pixel_chunk`` (e.g. 4, the authors' images per GPU) takes those
    top-k per chunk of that many images of the batch and averages the chunks' losses, so that one
    process holding 16 images mines as 4 GPUs of 4 images would (DDP averages per-GPU losses); None:
    one top-k over the whole batch. ``extra_terms`` maps further output names to ``(weight, term)``.

    Example:
        >>> loss = SegmentationLoss()
        >>> labels = torch.zeros(2, 8, 8, dtype=torch.long)
        >>> total, parts = loss({"P0": torch.zeros(2, 3, 2, 2), "aux": torch.zeros(2, 3, 2, 2)}, labels)
        >>> sorted(parts), round(total.item(), 4)
        (['P0', 'aux'], 1.5381)
        >>> labels[:, :4] = 255   # half the pixels ignored: "all" halves the loss, "valid" keeps it
        >>> [round(SegmentationLoss(mean_over=m).dense_ce(torch.zeros(2, 3, 2, 2), labels).item(), 4)
        ...  for m in ("valid", "all")]
        [1.0986, 0.5493]
    """

    def __init__(self, stage_weights: Mapping[str, float] | None = None, aux_weight: float = 0.4,
                 ignore_index: int = 255, hard_pixel_fraction: float | None = None,
                 hard_pixel_outputs: Sequence[str] | None = None, hard_pixel_chunk: int | None = None,
                 mean_over: str = "valid", extra_terms: Mapping[str, tuple[float, LossTerm]] | None = None):
        super().__init__()
        if hard_pixel_fraction is not None and not 0 < hard_pixel_fraction <= 1:
            raise ValueError(f"hard_pixel_fraction must be in (0, 1], got {hard_pixel_fraction}")
        if hard_pixel_chunk is not None and (isinstance(hard_pixel_chunk, bool) or not isinstance(hard_pixel_chunk, int)
                                             or hard_pixel_chunk < 1):
            raise ValueError(f"hard_pixel_chunk must be a positive number of images or None, got {hard_pixel_chunk!r}")
        if mean_over not in MEAN_OVER:
            raise ValueError(f"mean_over must be one of {MEAN_OVER}, got {mean_over!r}")
        self.weights = dict(DEFAULT_STAGE_WEIGHTS if stage_weights is None else stage_weights)
        self.weights["aux"] = aux_weight
        self.ignore_index = ignore_index
        self.hard_pixel_fraction = hard_pixel_fraction
        self.hard_pixel_outputs = None if hard_pixel_outputs is None else set(hard_pixel_outputs)
        self.hard_pixel_chunk = hard_pixel_chunk
        self.mean_over = mean_over
        self.extra_terms = {**DEFAULT_EXTRA_TERMS, **dict(extra_terms or {})}
        self.weights.update({name: weight for name, (weight, _) in self.extra_terms.items()})

    def mines(self, name: str) -> bool:
        """Whether output ``name`` is trained on its hard pixels only."""
        return self.hard_pixel_fraction is not None and (
            self.hard_pixel_outputs is None or name in self.hard_pixel_outputs)

    def _top_k_mean(self, pixel_loss: Tensor) -> Tensor:
        """Mean of the largest ``fraction`` of a chunk's pixel losses (ignored pixels are in the count)."""
        keep = max(1, int(self.hard_pixel_fraction * pixel_loss.numel()))
        return pixel_loss.flatten().topk(keep, sorted=False).values.mean()

    def dense_ce(self, logits: Tensor, labels: Tensor, hard: bool = False) -> Tensor:
        """Cross-entropy of logits upsampled to the labels, reduced by ``mean_over``, or (``hard``)
        the mean of the k largest of all pixels' losses, k = fraction x all pixels, per chunk."""
        pixel_loss = F.cross_entropy(resize_to(logits, labels.shape[-2:]), labels,
                                     ignore_index=self.ignore_index, reduction="none")
        if hard:  # ignored pixels are in the count with loss 0 (the authors' Detectron2 branch)
            chunks = pixel_loss.split(self.hard_pixel_chunk or len(pixel_loss))
            return torch.stack([self._top_k_mean(chunk) for chunk in chunks]).mean()
        if self.mean_over == "all":  # ignored pixels are 0 in the sum (cross_entropy's ignore_index)
            return pixel_loss.mean()
        labelled = (labels != self.ignore_index).sum()  # the ignored pixels' 0 stay in the sum: no gather
        if labelled == 0:  # every pixel ignored: a zero that still carries the graph
            return logits.sum() * 0.0
        return pixel_loss.sum() / labelled

    def forward(self, outputs: Mapping[str, Any], labels: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        unknown = sorted(set(outputs) - set(self.weights))
        if unknown:
            raise ValueError(f"no loss weight for outputs {unknown}; weighted outputs are {sorted(self.weights)}")
        parts = {}
        for name, output in outputs.items():
            if name in self.extra_terms:
                parts[name] = self.extra_terms[name][1](output, labels, self)
            else:
                parts[name] = self.dense_ce(output, labels, hard=self.mines(name))
        total = sum(self.weights[name] * part for name, part in parts.items())
        return total, parts
