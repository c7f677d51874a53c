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

Inference takes oneDNN's 1x1 convolution instead of the matrix product (:func:`linear_nhwc`): on
this CPU (2 threads, float32) it computes the SAMs' 1x1 layers of a 512 x 512 image in 77 ms where
``F.linear`` takes 106 ms, while in training ``F.linear``'s forward + backward is the faster (95 vs
99 ms on the smoke step; ``results/benchmarks/pointwise_cpu.csv`` from ``benchmarks/pointwise.py``).

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


def onednn_pointwise(x: Tensor, weight: Tensor) -> bool:
    """Whether :func:`linear_nhwc` computes through the 1x1 convolution: a contiguous float32
    ``(B, H, W, C)`` CPU map, no gradient to record, not traced (fvcore's FLOP counts stay those of
    the linear layers)."""
    return (x.dim() == 4 and x.device.type == "cpu" and x.dtype == torch.float32 and x.is_contiguous()
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
            and not torch.jit.is_tracing())


def linear_nhwc(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``F.linear`` over the channels of a channels-last map ``(..., C_in) -> (..., C_out)``; ``weight``
    is ``(C_out, C_in)`` or a 1x1 convolution's ``(C_out, C_in, 1, 1)``. A contiguous result."""
    weight = weight.flatten(1)
    if onednn_pointwise(x, weight):
        # the NCHW-shaped view of channels-last memory: oneDNN answers in channels-last memory too
        out = F.conv2d(x.permute(0, 3, 1, 2), weight[:, :, None, None], bias)
        return out.permute(0, 2, 3, 1).contiguous()  # a view unless a side is 1 (ambiguous strides)
    return F.linear(x, weight, bias)


def pointwise_nhwc(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """A 1x1 convolution of a channels-last map ``(..., C_in) -> (..., C_out)``."""
    return linear_nhwc(x, conv.weight, conv.bias)


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


class ChannelsLinear(nn.Linear):
    """``nn.Linear`` (same parameters, keys and initialisation) computed by :func:`linear_nhwc`."""

    def forward(self, x: Tensor) -> Tensor:
        return linear_nhwc(x, self.weight, self.bias)


def as_channels_linear(layer: nn.Linear) -> ChannelsLinear:
    """``layer`` itself, now a :class:`ChannelsLinear`. Why in place: a new layer would draw its
    initial weights again and shift the random stream of every model built after it (and so every
    committed smoke result) for no change in what it computes."""
    if type(layer) is not nn.Linear:
        raise TypeError(f"expected an nn.Linear, got {type(layer).__name__}")
    layer.__class__ = ChannelsLinear
    return layer
