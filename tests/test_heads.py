"""Coarse heads (DeepLabV3/ASPP, PSP, semantic FPN, UperNet, DeepLabV3+): shapes, widths, gradients."""
import pytest
import torch
from torch import nn

from pna.models.heads import HEADS, build_head
from pna.models.heads.aspp import ASPPHead
from pna.models.heads.deeplabv3plus import DeepLabV3PlusHead
from pna.models.heads.fpn import SemanticFPNHead
from pna.models.heads.psp import PSPHead
from pna.models.heads.upernet import UPerHead
from pna.models import get_spec

IN_CHANNELS = [8, 16, 32, 64]
NUM_CLASSES = 5


def pyramid(batch: int = 2, size: int = 64) -> list[torch.Tensor]:
    return [torch.randn(batch, c, size // 2 ** (i + 2), size // 2 ** (i + 2)) for i, c in enumerate(IN_CHANNELS)]


# head name -> (small kwargs, stride of the logits relative to the res2 map)
SMALL = {
    "aspp": (dict(channels=8, dilations=(1, 2, 3)), 8),
    "psp": (dict(channels=8), 8),
    "fpn": (dict(channels=8, fpn_channels=8), 1),
    "upernet": (dict(channels=8), 1),
    "deeplabv3plus": (dict(channels=8, c1_channels=4, dilations=(1, 2)), 1),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_head_shapes_and_every_parameter_gets_a_gradient(name):
    kwargs, down = SMALL[name]
    head = build_head(name, IN_CHANNELS, NUM_CLASSES, **kwargs).train()
    feats = pyramid()
    logits = head(feats)
    res2 = feats[0].shape[-1]
    assert logits.shape == (2, NUM_CLASSES, res2 // down, res2 // down)
    logits.square().mean().backward()
    missing = [n for n, p in head.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"{name}: parameters without gradient: {missing}"


def test_registry_holds_every_head_and_default_widths_are_the_mmseg_ones():
    assert {"fcn", "aspp", "psp", "fpn", "upernet", "deeplabv3plus"} <= set(HEADS)
    wide = [256, 512, 1024, 2048]
    aspp = build_head("aspp", wide, 21)
    convs = [m for m in aspp.modules() if isinstance(m, nn.Conv2d)]
    dilations = sorted({m.dilation[0] for m in convs if m.kernel_size == (3, 3)})
    assert dilations == [1, 12, 24, 36]  # 1 = the 3x3 fusion conv
    assert aspp.aspp.bottleneck[0].in_channels == 5 * 512 and aspp.classifier[1].in_channels == 512
    psp = build_head("psp", wide, 21)
    assert [s[0].output_size for s in psp.ppm.stages] == [1, 2, 3, 6]
    assert psp.ppm.bottleneck[0].in_channels == 2048 + 4 * 512
    fpn = build_head("fpn", wide, 21)
    assert [sum(isinstance(m, nn.Conv2d) for m in h.modules()) for h in fpn.scale_heads] == [1, 1, 2, 3]
    assert fpn.fpn.output[0].out_channels == 256 and fpn.classifier[1].in_channels == 128
    uper = build_head("upernet", wide, 21)
    assert uper.fuse[0].in_channels == 4 * 512
    plus = build_head("deeplabv3plus", wide, 21)
    assert plus.c1_bottleneck[0].out_channels == 48
    depthwise = [m for m in plus.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert depthwise and all(m.groups == m.in_channels == m.out_channels for m in depthwise)
    assert isinstance(plus.classifier[0], nn.Dropout2d) and plus.classifier[0].p == 0.1


def test_aspp_image_pool_branch_is_spatially_constant():
    head = ASPPHead(IN_CHANNELS, NUM_CLASSES, channels=8, dilations=(1, 2)).eval()
    pooled = head.aspp.branches[0](pyramid()[-1])
    assert torch.allclose(pooled, pooled[..., :1, :1].expand_as(pooled))


def test_fpn_can_return_its_fine_features():
    head = SemanticFPNHead(IN_CHANNELS, NUM_CLASSES, channels=8, fpn_channels=6).eval()
    feats = pyramid()
    logits, fine = head(feats, return_features=True)
    assert fine.shape == (2, 6, *feats[0].shape[-2:]) and head.fine_channels == 6
    assert torch.equal(logits, head(feats))


def test_heads_accept_non_square_maps():
    feats = [torch.randn(2, c, 24 // 2 ** i, 40 // 2 ** i) for i, c in enumerate(IN_CHANNELS)]
    for cls, kw in [(UPerHead, dict(channels=8)), (DeepLabV3PlusHead, dict(channels=8, dilations=(1, 2))),
                    (PSPHead, dict(channels=8))]:
        out = cls(IN_CHANNELS, NUM_CLASSES, **kw)(feats)
        assert out.shape[0] == 2 and out.shape[1] == NUM_CLASSES and out.shape[-1] / out.shape[-2] == 40 / 24


@pytest.mark.parametrize("name", sorted(SMALL))
def test_bad_in_channels_raise(name):
    with pytest.raises(ValueError, match="in_channels"):
        build_head(name, [8, 16], NUM_CLASSES)


def test_detectron2_aspp_pools_over_the_training_crop_window():
    # On a training crop (stride-16 map = the window) the pooling is global; on a larger test image
    # it is a sliding window average resized back (Detectron2's DeepLabV3 head), so it differs.
    from pna.models.heads.aspp import ImagePool

    torch.manual_seed(0)
    local, whole = ImagePool(8, 4, norm=False, kernel=(4, 8)), ImagePool(8, 4, norm=False)
    whole.load_state_dict(local.state_dict())
    crop, test = torch.randn(2, 8, 4, 8), torch.randn(2, 8, 8, 16)
    assert torch.allclose(local(crop), whole(crop))
    assert not torch.allclose(local(test), whole(test))
    windows = torch.nn.functional.avg_pool2d(test, (4, 8), stride=1)  # 5x9 window means
    assert torch.allclose(local(test)[..., 0, 0], local.conv(windows)[..., 0, 0])  # corners align
    assert get_spec("deeplabv3_r103_os16_pna").head_kwargs["pool_kernel"] == (32, 64)


def test_fpn_top_down_adds_the_nearest_upsampled_coarser_level():
    """With identity lateral and output convs the FPN levels are P5 = F5, Pi = Fi + nearest-2x(P(i+1))
    (module docstring: top-down pathway with nearest upsampling and addition); nearest 2x by hand."""
    from pna.models.heads.fpn import FPN

    fpn = FPN([4, 4, 4, 4], channels=4)
    with torch.no_grad():
        for lateral, output in zip(fpn.lateral, fpn.output):
            lateral.weight.copy_(torch.eye(4)[:, :, None, None])
            output.weight.zero_()
            output.weight[:, :, 1, 1] = torch.eye(4)
            lateral.bias.zero_()
            output.bias.zero_()
    feats = [torch.randn(1, 4, 16 // 2 ** i, 24 // 2 ** i) for i in range(4)]
    expected = [feats[3]]
    for f in reversed(feats[:3]):
        expected.insert(0, f + expected[0].repeat_interleave(2, -2).repeat_interleave(2, -1))
    with torch.no_grad():
        for got, want in zip(fpn(feats), expected):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-5)


def test_psp_concatenates_res5_before_the_pooled_maps():
    """Bottleneck weights zero on the pooled maps' channels: the output is the 3x3 conv-BN-ReLU of res5
    alone, computed here with F.conv2d and the eval BatchNorm written out."""
    head = PSPHead(IN_CHANNELS, NUM_CLASSES, channels=8).eval()
    conv, bn = head.ppm.bottleneck[0], head.ppm.bottleneck[1]
    with torch.no_grad():
        conv.weight[:, IN_CHANNELS[-1]:] = 0
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, IN_CHANNELS[-1], 5, 7)
    with torch.no_grad():
        y = torch.nn.functional.conv2d(x, conv.weight[:, :IN_CHANNELS[-1]], padding=1)
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        expected = torch.relu((y - bn.running_mean[:, None, None]) * scale[:, None, None] + bn.bias[:, None, None])
        torch.testing.assert_close(head.ppm(x), expected, rtol=0, atol=1e-5)


def test_aspp_image_pool_is_the_global_average():
    """Image pooling = global AVERAGE -> 1x1 conv (module docstring); with an identity conv (no norm,
    ReLU on positive inputs) the branch gives every position the channel means, summed by hand."""
    from pna.models.heads.aspp import ImagePool

    pool = ImagePool(4, 4, norm=False)
    with torch.no_grad():
        pool.conv[0].weight.copy_(torch.eye(4)[:, :, None, None])
        pool.conv[0].bias.zero_()
    x = torch.rand(2, 4, 3, 5) + 0.1
    means = torch.tensor([[sum(x[b, c].flatten().tolist()) / 15 for c in range(4)] for b in range(2)])
    with torch.no_grad():
        torch.testing.assert_close(pool(x), means[:, :, None, None].expand(2, 4, 3, 5), rtol=1e-6, atol=1e-6)
