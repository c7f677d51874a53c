"""SegFix at test time: boundary pixels of any segmentation take the label found at their offset.

From the SegFix network's two maps at the image size (the probability of "boundary", the softmax
of its 2 boundary logits, averaged over windows when it slides; the 8 direction logits), as the
authors' tester and post-processing script do (docs/refiners.md):

1. a pixel is a boundary pixel when its boundary probability exceeds :data:`BOUNDARY_THRESHOLD`;
2. its offset is the unit step of its arg-max direction (:data:`DIRECTION_STEPS`), multiplied by
   :data:`OFFSET_SCALE` (2, their script's default); every other pixel keeps offset 0;
3. each pixel of the segmentation takes the label at (y + dy, x + dx), positions clamped to the
   image (their bilinear ``grid_sample`` at integer positions with border padding reads exactly
   that pixel).

Example::

    >>> labels = torch.tensor([[[0, 0, 1, 1]]])
    >>> offsets = torch.tensor([[[[0, 0, 0, 0]], [[0, 0, -2, 0]]]])   # (B, 2 = (dy, dx), H, W)
    >>> apply_offsets(labels, offsets).tolist()                        # pixel 2 reads pixel 0
    [[[0, 0, 0, 1]]]
"""
from __future__ import annotations

import torch
from torch import Tensor

from pna.refiners.segfix_targets import DIRECTION_STEPS, NUM_DIRECTIONS

BOUNDARY_THRESHOLD = 0.5  # on the softmax probability of "boundary" (their tester, mask_logits[:, 1] > 0.5)
OFFSET_SCALE = 2          # their post-processing script's --scale default


def offsets_from_maps(boundary_prob: Tensor, direction_logits: Tensor, scale: int = OFFSET_SCALE,
                      threshold: float = BOUNDARY_THRESHOLD) -> Tensor:
    """Integer offsets (B, 2, H, W) as (dy, dx) from the boundary probability (B, H, W) and the
    direction logits (B, 8, H, W)."""
    if boundary_prob.dim() != 3 or direction_logits.dim() != 4 or direction_logits.shape[1] != NUM_DIRECTIONS:
        raise ValueError(f"expected a boundary probability (B, H, W) and direction logits (B, {NUM_DIRECTIONS}, H, W), "
                         f"got {tuple(boundary_prob.shape)} and {tuple(direction_logits.shape)}")
    if boundary_prob.shape[-2:] != direction_logits.shape[-2:]:
        raise ValueError("boundary and direction maps must have the same size")
    boundary = boundary_prob > threshold
    steps = torch.tensor(DIRECTION_STEPS, device=direction_logits.device)  # (8, 2)
    offsets = steps[direction_logits.argmax(1)] * scale  # (B, H, W, 2)
    offsets = offsets * boundary.unsqueeze(-1)
    return offsets.permute(0, 3, 1, 2).contiguous()


def apply_offsets(labels: Tensor, offsets: Tensor) -> Tensor:
    """``labels`` (B, H, W) where each pixel reads the label at its integer offset (B, 2, H, W),
    positions clamped to the image."""
    if labels.dim() != 3 or offsets.shape != (labels.shape[0], 2, *labels.shape[1:]):
        raise ValueError(f"labels (B, H, W) and offsets (B, 2, H, W) must match, got {tuple(labels.shape)} "
                         f"and {tuple(offsets.shape)}")
    b, h, w = labels.shape
    rows = torch.arange(h, device=labels.device).view(1, h, 1)
    cols = torch.arange(w, device=labels.device).view(1, 1, w)
    y = (rows + offsets[:, 0].long()).clamp(0, h - 1)
    x = (cols + offsets[:, 1].long()).clamp(0, w - 1)
    flat = labels.reshape(b, h * w)
    return flat.gather(1, (y * w + x).reshape(b, h * w)).view(b, h, w)


def refine_with_segfix(labels: Tensor, boundary_prob: Tensor, direction_logits: Tensor,
                       scale: int = OFFSET_SCALE) -> Tensor:
    """SegFix applied to a segmentation ``labels`` (B, H, W) with the maps at its size."""
    return apply_offsets(labels, offsets_from_maps(boundary_prob, direction_logits, scale))
