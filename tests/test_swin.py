"""Swin backbones through timm: NCHW pyramid, any size divisible by 32, local weights, loud random init."""
import warnings

import pytest
import timm
import torch

from pna.models.backbones import build_backbone
from pna.models.backbones.swin import SWINS, SwinBackbone


@pytest.fixture(scope="module")
def swin_t():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SwinBackbone("swin_t")


@pytest.mark.parametrize("size", [(64, 64), (96, 160)])
def test_pyramid_is_channels_first_at_strides_4_to_32(swin_t, size):
    feats = swin_t.eval()(torch.randn(1, 3, *size))
    assert [tuple(f.shape) for f in feats] == [
        (1, c, size[0] // s, size[1] // s) for c, s in zip([96, 192, 384, 768], [4, 8, 16, 32])]
    assert swin_t.out_channels == [96, 192, 384, 768] and swin_t.strides == [4, 8, 16, 32]


def test_window_7_and_shift_3_kept_on_small_maps(swin_t):
    blocks = [b for layer in swin_t.body.layers for b in layer.blocks]
    assert [tuple(b.window_size) for b in blocks] == [(7, 7)] * 12
    assert [tuple(b.shift_size) for b in blocks] == [(0, 0), (3, 3)] * 6
    assert [len(layer.blocks) for layer in swin_t.body.layers] == [2, 2, 6, 2]


def test_every_parameter_gets_a_gradient(swin_t):
    swin_t.train()
    swin_t.zero_grad()
    sum(f.mean() for f in swin_t(torch.randn(2, 3, 64, 64))).backward()
    missing = [n for n, p in swin_t.named_parameters() if p.grad is None]
    assert not missing


def test_bad_inputs_raise(swin_t):
    with pytest.raises(ValueError, match="multiples of 32"):
        swin_t(torch.randn(1, 3, 64, 80))
    with pytest.raises(ValueError, match="output stride 32"):
        build_backbone("swin_t", output_stride=16)
    with pytest.raises(ValueError, match="unknown Swin"):
        SwinBackbone("swin_l")
    with pytest.raises(FileNotFoundError, match="not_here.pth"):
        SwinBackbone("swin_t", pretrained="/nonexistent/not_here.pth")


def test_random_init_is_said_loudly():
    with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
        SwinBackbone("swin_t")


def test_local_imagenet_checkpoint_is_loaded(tmp_path, swin_t):
    # A classification checkpoint in timm's layout (head and final norm included), as a user would have.
    reference = timm.create_model(SWINS["swin_t"], pretrained=False)
    torch.nn.init.normal_(reference.layers[2].blocks[3].attn.qkv.weight)
    path = tmp_path / "swin_tiny_imagenet.pth"
    torch.save(reference.state_dict(), path)
    loaded = SwinBackbone("swin_t", pretrained=path)
    key = "layers.2.blocks.3.attn.qkv.weight"
    assert torch.equal(loaded.body.state_dict()[key], reference.state_dict()[key])
    assert not torch.equal(swin_t.body.state_dict()[key], reference.state_dict()[key])


def test_swin_b_widths_and_depths():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = build_backbone("swin_b")
    assert net.out_channels == [128, 256, 512, 1024]
    assert [len(layer.blocks) for layer in net.body.layers] == [2, 2, 18, 2]
