"""The per-pixel work of the boundary metrics (:mod:`pna.engine.boundary`): the label's maps,
computed once per image, and every stage's two histograms.

Dense maps only (boolean indexing is slow on a CPU) and no per-class loop: each pixel gets an
integer key (trimap band level, whether it lies in the label's and in the prediction's Boundary
IoU region, its contour state, label and predicted class) and one ``torch.bincount`` per stage
counts them all. The F-score's per-class matching ORs class bit maps (31 classes per int32 word)
over the tolerance window: a contour pixel is matched when the other map's window holds its
class's bit. Stages are stacked, so each operation runs once for all of them.

Example::

    >>> import torch
    >>> label = torch.zeros(1, 6, 6, dtype=torch.long); label[:, :, 3:] = 1
    >>> maps = LabelMaps(label, num_classes=2)
    >>> maps.distance, maps.contour[0, 0].int().tolist()    # d = 1 px; contour: columns 2 and 3
    (1, [0, 0, 1, 1, 0, 0])
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import torch
from torch import Tensor

from pna.engine.morphology import band_levels, inner_boundary, transitions, window_reduce

DILATION_RATIO = 0.02  # Boundary IoU's d: 2% of the image diagonal (Cheng et al. 2021)
TRIMAP_WIDTHS = (1, 2, 4, 8, 16, 32)  # px at the label's resolution
F_TOLERANCE_RATIO = 0.0075  # the BF score's match tolerance: 0.75% of the diagonal (Csurka et al. 2013)
_BITS = 31  # classes per int32 word of the F-score's class bit maps (the sign bit is left unused)
_CONTOUR_STATES = 3  # a pixel is not on a contour, on an unmatched one, or on a matched one


@dataclass(frozen=True)
class BoundarySettings:
    dilation_ratio: float = DILATION_RATIO
    trimap_widths: tuple[int, ...] = TRIMAP_WIDTHS
    f_tolerance_ratio: float = F_TOLERANCE_RATIO

    def __post_init__(self):
        for name in ("dilation_ratio", "f_tolerance_ratio"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"boundary {name} must be in [0, 1), got {getattr(self, name)}")
        widths = tuple(self.trimap_widths)
        if not widths or list(widths) != sorted(set(widths)) or not all(isinstance(w, int) and w >= 1 for w in widths):
            raise ValueError(f"boundary trimap_widths must be increasing integers >= 1, got {self.trimap_widths}")
        object.__setattr__(self, "trimap_widths", widths)

    def to_dict(self) -> dict:
        return {**asdict(self), "trimap_widths": list(self.trimap_widths)}


def pixels_of(ratio: float, height: int, width: int) -> int:
    """``ratio`` of the image diagonal in whole pixels (rounded as the reference does), at least 1.

    >>> pixels_of(0.02, 1024, 2048), pixels_of(0.02, 256, 256), pixels_of(0.02, 5, 5)
    (46, 7, 1)
    """
    return max(1, int(round(ratio * math.hypot(height, width))))


def _contour_bits(codes: Tensor, contour: Tensor, words: int) -> Tensor:
    """(words, N, H, W) int32: on contour pixels of class c, bit c % 31 of word c // 31 (the
    ignored code never lies on a contour, so its shift is masked away)."""
    shift = codes.int()
    if words > 1:
        word, shift = shift // _BITS, shift % _BITS
    bit = torch.bitwise_left_shift(torch.ones((), dtype=torch.int32, device=codes.device), shift)
    bit.masked_fill_(~contour, 0)
    if words == 1:
        return bit[None]
    return torch.stack([torch.where(word == w, bit, 0) for w in range(words)])


def _any_common_bit(a: Tensor, b: Tensor) -> Tensor:
    return ((a & b) != 0).any(0)


class LabelMaps:
    """What a batch of labels (N, H, W) contributes to every stage's metrics, computed once.

    Holds dense maps only (no boolean indexing, slow on a CPU): the label's class codes (ignored:
    ``num_classes``), its Boundary IoU region, contours and their class bits, and ``key``, the
    label's part of the histogram key that :meth:`BoundaryMetrics.update` completes per stage.
    """

    def __init__(self, label: Tensor, num_classes: int, ignore_index: int = 255,
                 settings: BoundarySettings = BoundarySettings(), device=None):
        label = label.to(device if device is not None else label.device)
        label = label.reshape(-1, *label.shape[-2:])
        self.num_classes, self.settings = num_classes, settings
        height, width = label.shape[-2:]
        self.distance = pixels_of(settings.dilation_ratio, height, width)
        self.tolerance = pixels_of(settings.f_tolerance_ratio, height, width)
        self.words = -(-num_classes // _BITS)
        self.valid = (label >= 0) & (label < num_classes) & (label != ignore_index)
        self.codes = torch.where(self.valid, label, num_classes).to(_code_dtype(num_classes))
        edges = transitions(self.codes)
        self.boundary = inner_boundary(self.codes, self.distance, edges) & self.valid
        self.contour = edges & self.valid
        self.bits = _contour_bits(self.codes, self.contour, self.words)
        self.near = window_reduce(self.bits, self.tolerance, torch.bitwise_or, 0)
        levels = band_levels(edges, settings.trimap_widths)
        levels[~self.valid] = len(settings.trimap_widths)  # outside every band
        k = HistogramKey(num_classes, len(settings.trimap_widths))
        self.key = levels.int().mul_(k.level).add_(self.boundary, alpha=k.label_boundary)
        self.key.add_(self.contour, alpha=k.label_contour).add_(self.codes, alpha=k.label)


def _code_dtype(num_classes: int) -> torch.dtype:
    return torch.uint8 if num_classes < 255 else torch.int16


class HistogramKey:
    """Strides of the per-pixel histogram key (level, label boundary, intersection, label contour
    state, label class, predicted class), and the second one (predicted boundary and contour state,
    predicted class). Classes count ``num_classes + 1`` codes: the last is an ignored pixel."""

    def __init__(self, num_classes: int, widths: int):
        codes = num_classes + 1
        self.label = codes
        self.label_contour = codes * codes  # 0 none, 1 unmatched, 2 matched
        self.inter = _CONTOUR_STATES * self.label_contour
        self.label_boundary = 2 * self.inter
        self.level = 2 * self.label_boundary
        self.bins = (widths + 1) * self.level
        self.shape = (widths + 1, 2, 2, _CONTOUR_STATES, codes, codes)
        self.pred_contour = codes
        self.pred_boundary = _CONTOUR_STATES * codes
        self.pred_bins = 2 * self.pred_boundary
        self.pred_shape = (2, _CONTOUR_STATES, codes)


def _class_codes(prediction: Tensor, ref: LabelMaps) -> Tensor:
    """Predicted class ids as the label's code type, on its device, clamped to the classes (as the
    confusion matrix does; a read finds whether that is needed, cheaper than a clamped copy)."""
    prediction = prediction.to(ref.codes.device).reshape(ref.codes.shape)
    low, high = torch.aminmax(prediction)
    if low < 0 or high >= ref.num_classes:
        prediction = prediction.clamp(0, ref.num_classes - 1)
    return prediction.to(ref.codes.dtype)


def stage_histograms(predictions: Sequence[Tensor], ref: LabelMaps, key: HistogramKey) -> list[tuple[Tensor, Tensor]]:
    """For the predicted class ids of S stages (each shaped like the label): per stage, the
    histogram of the label key (level, label boundary, intersection, label contour state, label
    class, predicted class) and of the predicted key (predicted boundary, contour state, class),
    class codes cut to the real classes. The stages are stacked: one operation serves them all."""
    c = ref.num_classes
    stacked = torch.stack([_class_codes(p, ref) for p in predictions])  # (S, N, H, W)
    codes = torch.where(ref.valid, stacked, c)  # ignored pixels belong to no class
    edges = transitions(codes)
    boundary = inner_boundary(codes, ref.distance, edges) & ref.valid
    contour = edges & ref.valid
    bits = _contour_bits(codes, contour, ref.words)
    near = window_reduce(bits, ref.tolerance, torch.bitwise_or, 0)
    matched = _any_common_bit(ref.near[:, None], bits)  # a predicted contour pixel near a label contour of its class
    label_matched = _any_common_bit(near, ref.bits[:, None])
    inter = boundary & ref.boundary & (codes == ref.codes)
    label_key = (ref.key + codes).add_(inter, alpha=key.inter).add_(label_matched, alpha=key.label_contour)
    pred_key = codes.int().add_(boundary, alpha=key.pred_boundary).add_(contour, alpha=key.pred_contour)
    pred_key.add_(matched, alpha=key.pred_contour)
    return [(torch.bincount(label_key[s].reshape(-1), minlength=key.bins).view(key.shape)[..., :c, :],
             torch.bincount(pred_key[s].reshape(-1), minlength=key.pred_bins).view(key.pred_shape)[..., :c])
            for s in range(len(codes))]
