"""Every parameter's gradient has its parameter's strides.

DDP copies each gradient into a bucket view laid out like the parameter and warns "Grad strides do
not match bucket view strides" when they differ. They differed when a convolution saw a
channels-last input (a permuted LayerNorm output): its weight gradient came back channels-last. On
a 1x1 map (stride 32 of a 32x32 crop) channels-last strides even pass as contiguous.
"""
import warnings

import pytest
import torch

from pna.configs import load_config
from pna.models import create_model
from pna.models.sam import ChannelNorm

SMALL = {"embed_dims": (32, 32, 32, 32), "head_channels": 16, "aux_channels": 16, "window_size": 3}


def _mismatched_grads(model: torch.nn.Module, size: int) -> list[str]:
    outputs = model.train()(torch.randn(2, 3, size, size))
    sum(v.float().mean() for v in outputs.values()).backward()
    return [f"{n}: param {p.stride()} grad {p.grad.stride()}" for n, p in model.named_parameters()
            if p.grad is not None and p.grad.stride() != p.stride()]


@pytest.mark.parametrize("size", [32, 64])  # 32: the stride-32 map is 1x1
def test_pna_gradients_are_laid_out_like_their_parameters(size):
    cfg = load_config("voc/fcn_r50_os32_pna", "smoke")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # randomly initialised backbone
        model = create_model(cfg.model.name, 5, **{**cfg.model.overrides, **SMALL})
    assert _mismatched_grads(model, size) == []


def test_channel_norm_gives_plain_nchw_even_on_a_1x1_map():
    norm = ChannelNorm(8)
    for shape in [(2, 8, 1, 1), (2, 8, 3, 5)]:
        x = torch.randn(shape[0], *shape[2:], shape[1]).permute(0, 3, 1, 2)  # channels-last input
        y = norm(x)
        assert y.stride() == torch.empty(shape).stride()
        ref = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (8,), norm.weight, norm.bias, norm.eps)
        torch.testing.assert_close(y, ref.permute(0, 3, 1, 2))
