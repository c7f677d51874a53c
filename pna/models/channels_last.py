"""The refinement's layout: every map of a stage lives in channels-last memory, ``(B, H, W, C)``.

Why: the stage's LayerNorms, linear layers and neighbourhood attention read channels-last maps,
and the SAM's depthwise convolutions run about 4x faster on them; switching between NCHW and
channels-last is a transposing copy that costs as much as a small convolution on the CPU
(``results/benchmarks/pna_profile_cpu.md``). So the 1x1 convolutions are matrix products over each
pixel's channels (:class:`PointwiseConv` keeps ``nn.Conv2d``'s parameters, state-dict keys and
initialisation, and returns an NCHW-shaped view of channels-last memory), and a channels-last map
enters a depthwise convolution as the NCHW-shaped view of itself.

Gradients keep their parameters' strides (DDP's bucket views, ``tests/test_grad_layout.py``): a 1x1
weight is used through ``weight.flatten(1)`` (a view, whose gradient comes back in the weight's
layout); a depthwise convolution on a channels-last input returns its weight gradient with
channels-last strides, which :func:`depthwise` gives back in the weight's own.

Example:
    >>> conv = PointwiseConv(8, 4)
    >>> x = torch.randn(2, 8, 5, 6)
    >>> y = conv(x)
    >>> y.shape, y.permute(0, 2, 3, 1).is_contiguous()
    (torch.Size([2, 4, 5, 6]), True)
    >>> torch.allclose(y, torch.nn.functional.conv2d(x, conv.weight, conv.bias), atol=1e-6)
    True
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def to_nhwc(x: Tensor) -> Tensor:
    """``(B, C, H, W)`` -> ``(B, H, W, C)``: a view for channels-last memory, else a copy."""
    return x.permute(0, 2, 3, 1).contiguous()


def pointwise_nhwc(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """A 1x1 convolution of a channels-last map ``(..., C_in) -> (..., C_out)``."""
    return F.linear(x, conv.weight.flatten(1), conv.bias)


def pointwise(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """A 1x1 convolution of an NCHW-shaped map in any memory layout, as an NCHW-shaped view of
    channels-last memory. NCHW memory is read through a transposed matrix product (no copy)."""
    batch, _, height, width = x.shape
    nhwc = x.permute(0, 2, 3, 1)
    if nhwc.is_contiguous():
        out = pointwise_nhwc(conv, nhwc)
    else:
        out = torch.matmul(x.flatten(2).transpose(1, 2), conv.weight.flatten(1).t())
        out = (out if conv.bias is None else out + conv.bias).view(batch, height, width, -1)
    return out.permute(0, 3, 1, 2)


class _PlainGradStrides(torch.autograd.Function):
    """Identity whose backward gives the gradient the standard (contiguous) strides of its input."""

    @staticmethod
    def forward(ctx, weight: Tensor) -> Tensor:
        return weight.view_as(weight)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return grad if grad.stride() == torch.empty(grad.shape).stride() else grad.clone(memory_format=torch.contiguous_format)


def depthwise(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """``conv`` (a grouped convolution) on a channels-last map ``(B, H, W, C) -> (B, H, W, C_out)``."""
    weight = conv.weight
    if weight.requires_grad and torch.is_grad_enabled():
        weight = _PlainGradStrides.apply(weight)
    out = F.conv2d(x.permute(0, 3, 1, 2), weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return out.permute(0, 2, 3, 1).contiguous()  # already contiguous: the convolution keeps channels-last


def layer_norm(norm: nn.Module, x: Tensor) -> Tensor:
    """A LayerNorm over the channels (``norm.weight``, ``norm.bias``, ``norm.eps``) of a channels-last map."""
    return F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias, norm.eps)


class PointwiseConv(nn.Conv2d):
    """``nn.Conv2d(in_channels, out_channels, 1)`` computed by :func:`pointwise`: an NCHW-shaped
    output in channels-last memory."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True):
        super().__init__(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return pointwise(self, x)
