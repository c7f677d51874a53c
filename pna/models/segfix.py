"""The SegFix network (Yuan et al., ECCV 2020): a backbone and two 1x1 branches predicting, at
stride 4, which pixels are boundary pixels (2 classes) and in which of 8 directions the interior
of each pixel's region lies; and its loss.

As the authors' ``SegFix_HRNet`` (docs/refiners.md): the backbone's four outputs are upsampled
bilinearly (``align_corners=True``) to the first one's size (stride 4) and concatenated (HRNet-W48:
48 + 96 + 192 + 384 = 720 channels); each branch is a 1x1 conv to ``mid_channels`` (256) without
bias, BatchNorm, ReLU, and a 1x1 conv without bias to its 2 or 8 outputs. The paper profile uses
their backbone, HRNet-W48 (:mod:`pna.models.backbones.hrnet`); any backbone of
:func:`pna.models.build_backbone` serves (the smoke profile's half-width ResNet-10).

Loss (their ``SegFixLoss``), predictions upsampled to the label (bilinear, ``align_corners=True``):
cross-entropy of the boundary map against :func:`pna.refiners.segfix_targets`'s boundary, each
class weighted 1 - its share of the batch's labelled pixels; plus cross-entropy of the direction
map on the labelled pixels the network itself currently calls boundary (softmax > 0.5), weighted
likewise by the direction classes' shares among those pixels; the two summed with weight 1.

The model predicts no classes: it refines the classes of any segmentation
(:func:`pna.refiners.refine_with_segfix`). Training mode returns ``{"segfix": {"boundary",
"direction"}}`` at stride 4; eval mode the two maps at the input size.

Example::

    >>> import warnings; warnings.simplefilter("ignore")
    >>> from pna.models.backbones import build_backbone
    >>> backbone = build_backbone("resnet18c")
    >>> net = SegFixNet(backbone, SegFixHead(backbone.out_channels, mid_channels=16))
    >>> maps = net.eval()(torch.zeros(1, 3, 64, 64))
    >>> tuple(maps["boundary"].shape), tuple(maps["direction"].shape)
    ((1, 2, 64, 64), (1, 8, 64, 64))
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pna.refiners.segfix_targets import IGNORE, NUM_DIRECTIONS, segfix_targets

from .segmentor import pad_to_multiple, size_divisor

SEGFIX_HEAD = "segfix"       # the registry's head name of a SegFix network
MID_CHANNELS = 256           # their branches' width
BOUNDARY_THRESHOLD = 0.5     # the loss's "predicted boundary" (their mask_threshold)
OUTPUT = "segfix"            # the training output's name (pna.models.losses weighs it 1)


def _upsample(x: Tensor, size) -> Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)


class SegFixHead(nn.Module):
    """Concatenated multi-level features -> (boundary logits, direction logits) at the first level's stride."""

    def __init__(self, in_channels: list[int], mid_channels: int = MID_CHANNELS):
        super().__init__()
        total = sum(in_channels)

        def branch(outputs: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(total, mid_channels, 1, bias=False), nn.BatchNorm2d(mid_channels),
                                 nn.ReLU(inplace=True), nn.Conv2d(mid_channels, outputs, 1, bias=False))

        self.boundary = branch(2)
        self.direction = branch(NUM_DIRECTIONS)

    def forward(self, feats: list[Tensor]) -> dict[str, Tensor]:
        size = feats[0].shape[-2:]
        x = torch.cat([feats[0]] + [_upsample(f, size) for f in feats[1:]], dim=1)
        return {"boundary": self.boundary(x), "direction": self.direction(x)}


class SegFixNet(nn.Module):
    """Backbone + :class:`SegFixHead`; ``stage_names`` is empty: it predicts no classes."""

    stage_names: list[str] = []

    def __init__(self, backbone: nn.Module, head: SegFixHead, size_divisibility: int = 1):
        super().__init__()
        self.backbone, self.head, self.size_divisibility = backbone, head, size_divisibility

    def predict_all(self, images: Tensor) -> dict[str, dict[str, Tensor]]:
        return {OUTPUT: self.head(self.backbone(images))}

    def predict_maps(self, images: Tensor) -> dict[str, Tensor]:
        """Boundary and direction logits at the input size (inputs padded to the size divisor and
        the upsampled maps cropped back, as every model here predicts)."""
        h, w = images.shape[-2:]
        padded = pad_to_multiple(images, size_divisor(self))
        maps = self.predict_all(padded)[OUTPUT]
        return {name: _upsample(m, padded.shape[-2:])[..., :h, :w] for name, m in maps.items()}

    def forward(self, images: Tensor, return_all: bool = False):
        if self.training or return_all:
            return self.predict_all(images)
        return self.predict_maps(images)


def _balanced_ce(logits: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """Cross-entropy over the pixels with ``target != -1``, class c weighted 1 - (its share among
    them); the weighted mean, or a zero that keeps the graph when no pixel counts."""
    valid = target != IGNORE
    counts = torch.bincount(target[valid], minlength=num_classes).float()
    weights = 1.0 - counts / counts.sum().clamp(min=1.0)
    pixel = F.cross_entropy(logits, target.clamp(min=0), reduction="none")
    pixel_weights = weights[target.clamp(min=0)] * valid
    denominator = pixel_weights.sum()
    if denominator <= 0:
        return logits.sum() * 0.0
    return (pixel * pixel_weights).sum() / denominator


def segfix_loss(maps: Mapping[str, Tensor], labels: Tensor, ignore_index: int = 255) -> Tensor:
    """The SegFix loss of ``maps`` ({"boundary", "direction"}, any stride) against a label batch."""
    boundary_target, direction_target = segfix_targets(labels, ignore_index)
    size = labels.shape[-2:]
    boundary, direction = _upsample(maps["boundary"], size), _upsample(maps["direction"], size)
    boundary_loss = _balanced_ce(boundary, boundary_target, 2)
    predicted = boundary.detach().softmax(1)[:, 1] > BOUNDARY_THRESHOLD
    direction_target = torch.where(predicted, direction_target, torch.full_like(direction_target, IGNORE))
    return boundary_loss + _balanced_ce(direction, direction_target, NUM_DIRECTIONS)


def segfix_term(maps: Mapping[str, Tensor], labels: Tensor, criterion) -> Tensor:
    """The loss term :class:`pna.models.SegmentationLoss` uses for the ``"segfix"`` output."""
    return segfix_loss(maps, labels, criterion.ignore_index)
