"""Detectron2 DeepLab R-52 / R-103 (``resnet52`` / ``resnet103``) against the audit (docs/authors_audit.csv):
stem 64-64-128 then max pool, res2 input 128 channels, stride in the 3x3 conv, blocks 3-4-6-3 /
3-4-23-3, res5 multi-grid (1, 2, 4) at every output stride (OS16: stride 1, dilations 2 x (1, 2, 4))."""
import warnings

import pytest
import torch
from torch import nn

from pna.models.backbones import build_backbone

DEPTHS = {"resnet52": (3, 4, 6, 3), "resnet103": (3, 4, 23, 3)}
# output stride -> (first-block stride of res2..res5, 3x3 dilations of res5's blocks)
LAYOUT = {32: ((1, 2, 2, 2), (1, 2, 4)), 16: ((1, 2, 2, 1), (2, 4, 8))}


def build(name, output_stride):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_backbone(name, output_stride)


@pytest.mark.parametrize("output_stride", [32, 16])
@pytest.mark.parametrize("name", ["resnet52", pytest.param("resnet103", marks=pytest.mark.slow)])
def test_stages_strides_and_dilations(name, output_stride):
    net = build(name, output_stride).eval()
    body = net.body
    stem = [m for m in body.conv1 if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride) for c in stem] == [
        (3, 64, (3, 3), (2, 2)), (64, 64, (3, 3), (1, 1)), (64, 128, (3, 3), (1, 1))]
    assert isinstance(body.bn1, nn.BatchNorm2d) and body.bn1.num_features == 128
    assert (body.maxpool.kernel_size, body.maxpool.stride, body.maxpool.padding) == (3, 2, 1)
    stages = [body.layer1, body.layer2, body.layer3, body.layer4]
    assert tuple(len(s) for s in stages) == DEPTHS[name]
    assert stages[0][0].conv1.in_channels == 128 and stages[0][0].downsample[0].in_channels == 128
    first_strides, res5_dilations = LAYOUT[output_stride]
    for stage, stride in zip(stages, first_strides):
        assert stage[0].conv2.stride == (stride, stride) and stage[0].downsample[0].stride == (stride, stride)
        assert all(b.conv1.stride == (1, 1) and b.conv3.stride == (1, 1) for b in stage)  # stride in the 3x3
        assert all(b.conv2.padding == b.conv2.dilation for b in stage)
    assert all(b.conv2.dilation == (1, 1) for s in stages[:3] for b in s)
    assert tuple(b.conv2.dilation[0] for b in stages[3]) == res5_dilations
    assert net.out_channels == [256, 512, 1024, 2048] and net.size_divisor == 1
    with torch.no_grad():
        sizes = [tuple(f.shape[-2:]) for f in net(torch.zeros(1, 3, 64, 96))]
    assert sizes == [(16, 24), (8, 12), (4, 6), (64 // output_stride, 96 // output_stride)]
    assert net.strides == [4, 8, 16, output_stride]


def test_output_stride_8_is_refused():
    with pytest.raises(ValueError, match=r"resnet52: output_stride must be one of \(16, 32\), got 8"):
        build("resnet52", 8)


def test_dilated_res5_matches_a_hand_built_block():
    """The 3x3 conv of res5's third block at OS16 is a dilation-8 conv: same result as F.conv2d by hand."""
    net = build("resnet52", 16).eval()
    conv = net.body.layer4[2].conv2
    x = torch.randn(1, 512, 12, 12)
    expected = torch.nn.functional.conv2d(x, conv.weight, padding=8, dilation=8)
    assert torch.allclose(conv(x), expected, atol=1e-5)
