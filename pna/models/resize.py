"""Bilinear resizing (``align_corners=False``): the one resize the heads, the segmentor, the losses
and the evaluation use for feature maps and logits (the convention of both of the authors' code
bases for logits; nearest / other modes stay explicit where a stage asks for them).

On the CPU, a small map whose resize needs a gradient (the losses upsample every prediction to the
labels' size in training) is resized by two matrix products with the interpolation weights, the
weights of ``F.interpolate`` for each output row and column: its backward is then two products as
well, where the CPU's ``upsample_bilinear2d`` backward takes 3-15x as long at these sizes
(``results/benchmarks/pna_profile_cpu.md``). The values equal ``F.interpolate``'s to float rounding.

Example:
    >>> import torch
    >>> resize_to(torch.zeros(1, 3, 4, 4), (16, 12)).shape
    torch.Size([1, 3, 16, 12])
    >>> ref = torch.zeros(2, 5, 8, 8)
    >>> resize_to(torch.zeros(2, 3, 4, 4), ref).shape
    torch.Size([2, 3, 8, 8])
    >>> x = torch.randn(2, 3, 5, 7, requires_grad=True)
    >>> torch.allclose(resize_to(x, (16, 9)), F.interpolate(x, size=(16, 9), mode="bilinear", align_corners=False), atol=1e-6)
    True
"""
from __future__ import annotations

import functools
from typing import Sequence

import torch
import torch.nn.functional as F

# Input sides up to which the matrix products are used (cost per output grows with the input side;
# at 64 the products still beat upsample_bilinear2d's backward on a 2-core CPU).
SEPARABLE_MAX_SIDE = 64


@functools.lru_cache(maxsize=256)
def interpolation_weights(size_in: int, size_out: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(size_out, size_in)`` bilinear weights along one axis, as ``F.interpolate`` computes them:
    source ``(i + 0.5) * size_in / size_out - 0.5`` clamped at 0, its two neighbours (the last input
    twice at the far border) weighted by the distance.

    Example:
        >>> interpolation_weights(2, 4).tolist()
        [[1.0, 0.0], [0.75, 0.25], [0.25, 0.75], [0.0, 1.0]]
    """
    source = ((torch.arange(size_out, dtype=dtype) + 0.5) * (size_in / size_out) - 0.5).clamp_min(0)
    low = source.long().clamp(max=size_in - 1)
    high = (low + 1).clamp(max=size_in - 1)
    far = source - low
    rows = torch.arange(size_out)
    weights = torch.zeros(size_out, size_in, dtype=dtype)
    weights.index_put_((rows, low), 1 - far, accumulate=True)
    return weights.index_put_((rows, high), far, accumulate=True)


def _separable(x: torch.Tensor) -> bool:
    return (x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64) and torch.is_grad_enabled()
            and x.requires_grad and max(x.shape[-2:]) <= SEPARABLE_MAX_SIDE
            and not torch.is_autocast_enabled("cpu")
            and not torch.jit.is_tracing())  # fvcore's traces count an upsampling, not two matrix products


def resize_to(x: torch.Tensor, size: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """``x`` (B, C, h, w) resized bilinearly to ``size`` = (H, W), or to the last two sides of a
    tensor given as ``size``; returned as is when it has that size already."""
    size = tuple(size.shape[-2:]) if isinstance(size, torch.Tensor) else tuple(int(s) for s in size)
    if tuple(x.shape[-2:]) == size:
        return x
    if _separable(x):  # columns first, then rows: F.interpolate's order of the two weightings
        rows = interpolation_weights(x.shape[-2], size[0], x.dtype)
        cols = interpolation_weights(x.shape[-1], size[1], x.dtype)
        return torch.matmul(rows, torch.matmul(x, cols.t()))
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)
