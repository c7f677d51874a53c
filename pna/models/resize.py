"""Bilinear resizing (``align_corners=False``): the one resize the heads, the segmentor, the losses
and the evaluation use for feature maps and logits (the convention of both of the authors' code
bases for logits; nearest / other modes stay explicit where a stage asks for them).

Example:
    >>> import torch
    >>> resize_to(torch.zeros(1, 3, 4, 4), (16, 12)).shape
    torch.Size([1, 3, 16, 12])
    >>> ref = torch.zeros(2, 5, 8, 8)
    >>> resize_to(torch.zeros(2, 3, 4, 4), ref).shape
    torch.Size([2, 3, 8, 8])
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def resize_to(x: torch.Tensor, size: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """``x`` (B, C, h, w) resized bilinearly to ``size`` = (H, W), or to the last two sides of a
    tensor given as ``size``; returned as is when it has that size already."""
    size = tuple(size.shape[-2:]) if isinstance(size, torch.Tensor) else tuple(int(s) for s in size)
    if tuple(x.shape[-2:]) == size:
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
