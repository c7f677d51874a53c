"""Inference at any input size for every backbone: VOC's test sizes (500x375, 512x683) come out at
the input size; inputs a backbone cannot take as they are (Swin: sides not multiples of 32) are
zero-padded at the bottom/right and the logits cropped back, in the eval forward and in predict_stage_logits.
Expected values are built by hand (F.pad, F.interpolate, slicing) or come from a model whose output is a
known function of its input, never from predict_at_input_size itself."""
import contextlib
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from pna.engine.evaluate import predict_stage_logits
from pna.models import ProgressiveRefinement, Segmentor, build_backbone
from pna.models.heads import build_head
from pna.models.segmentor import predict_at_input_size

VOC_SIZES = [(500, 375), (512, 683)]
BACKBONES = ["resnet50c", pytest.param("resnet101c", marks=pytest.mark.slow), "resnet52",
             pytest.param("resnet103", marks=pytest.mark.slow), "swin_t", pytest.param("swin_b", marks=pytest.mark.slow)]
SIZE_DIVISOR = {"resnet50c": 1, "resnet101c": 1, "resnet52": 1, "resnet103": 1, "swin_t": 32, "swin_b": 32}


def segmentor(name, refine=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        backbone = build_backbone(name)
    stages = ProgressiveRefinement(backbone.out_channels, 21, (32, 32, 32, 32), window_size=3) if refine else None
    return Segmentor(backbone, build_head("fcn", backbone.out_channels, 21, channels=16), stages).eval()


@pytest.fixture(scope="module")
def models():
    cache = {}
    return lambda name: cache.setdefault(name, segmentor(name))


def by_hand(model, image, padded_size, stages=("P0",)):
    """Zero-pad bottom/right with F.pad, run the raw forward, upsample bilinearly (align_corners
    False) to the padded size, crop the top-left input-sized corner (mmseg's way)."""
    h, w = image.shape[-2:]
    ph, pw = padded_size
    outputs = model(F.pad(image, (0, pw - w, 0, ph - h)), return_all=True)
    return {name: F.interpolate(outputs[name], size=(ph, pw), mode="bilinear", align_corners=False)[..., :h, :w]
            for name in stages}


@contextlib.contextmanager
def backbone_input_sizes(model):
    seen = []
    hook = model.backbone.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[-2:])))
    try:
        yield seen
    finally:
        hook.remove()


@pytest.mark.parametrize("size", VOC_SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("name", BACKBONES)
@torch.no_grad()
def test_eval_forward_at_voc_test_sizes(models, name, size):
    model = models(name)
    assert model.backbone.size_divisor == SIZE_DIVISOR[name]
    with backbone_input_sizes(model) as seen:
        logits = model(torch.randn(1, 3, *size))
    assert tuple(logits.shape) == (1, 21, *size)
    d = SIZE_DIVISOR[name]
    assert seen[-1] == (math.ceil(size[0] / d) * d, math.ceil(size[1] / d) * d)


@torch.no_grad()
def test_predict_stages_pads_swin_like_the_eval_forward(models):
    model = models("swin_t")
    with backbone_input_sizes(model) as seen:
        stages = predict_stage_logits(model, torch.randn(1, 3, 512, 683))
    assert list(stages) == ["P0"] and tuple(stages["P0"].shape) == (1, 21, 512, 683) and seen == [(512, 704)]
    small = torch.randn(1, 3, 100, 70)
    assert torch.allclose(predict_stage_logits(model, small)["P0"], by_hand(model, small, (128, 96))["P0"], atol=1e-6)


@torch.no_grad()
def test_padding_is_zeros_at_bottom_right_and_cropped_at_input_resolution(models):
    """mmseg's way: zero-pad the normalised image, upsample the logits to the padded size, crop."""
    model, image = models("swin_t"), torch.randn(1, 3, 100, 70)
    assert torch.allclose(model(image), by_hand(model, image, (128, 96))["P0"], atol=1e-6)
    with pytest.raises(ValueError, match="multiples of 32"):  # the raw forward takes the input as it is
        model(image, return_all=True)


@torch.no_grad()
def test_resnet_logits_unchanged_when_no_padding_is_needed(models):
    model = models("resnet50c")
    image = torch.randn(1, 3, 500, 375)
    plain = F.interpolate(model(image, return_all=True)["P0"], size=(500, 375), mode="bilinear", align_corners=False)
    assert torch.equal(model(image), plain)  # size_divisor 1: never padded
    image = image[..., :480, :352]  # multiples of 32: a divisor of 32 pads nothing either
    plain = F.interpolate(model(image, return_all=True)["P0"], size=(480, 352), mode="bilinear", align_corners=False)
    model.backbone.size_divisor = 32
    try:
        with backbone_input_sizes(model) as seen:
            assert torch.equal(model(image), plain)
        assert seen == [(480, 352)]
    finally:
        del model.backbone.size_divisor  # back to the class attribute


@torch.no_grad()
def test_every_refinement_stage_is_cropped_back():
    model = segmentor("resnet18c", refine=True)
    model.backbone.size_divisor = 32  # make the small ResNet need padding, to run every stage through it
    image = torch.randn(1, 3, 100, 70)
    with backbone_input_sizes(model) as seen:
        stages = predict_stage_logits(model, image)
    assert list(stages) == ["P0", "P1", "P2", "P3", "P4"] and seen == [(128, 96)]
    expected = by_hand(model, image, (128, 96), list(stages))
    for name in stages:
        assert tuple(stages[name].shape) == (1, 21, 100, 70)
        assert torch.allclose(stages[name], expected[name], atol=1e-6), name
    assert torch.allclose(model(image), expected["P4"], atol=1e-6)
    both = predict_at_input_size(model, image, ["P0", "P4"])
    assert list(both) == ["P0", "P4"] and all(torch.allclose(both[n], expected[n], atol=1e-6) for n in both)


class BlockMeans(torch.nn.Module):
    """A 'segmentor' whose logits are known: at stride ``s``, channel 0 = mean of the image's first
    channel over each s x s block, channel 1 = 1 everywhere (0 would be the zero padding's value)."""

    stage_names = ["P0"]

    def __init__(self, stride, divisor):
        super().__init__()
        self.stride, self.backbone = stride, torch.nn.Module()
        self.backbone.size_divisor = divisor

    def forward(self, images, return_all=False):
        assert return_all and images.shape[-2] % self.backbone.size_divisor == 0 == images.shape[-1] % self.backbone.size_divisor
        pooled = F.avg_pool2d(images[:, :1], self.stride)
        return {"P0": torch.cat([pooled, torch.ones_like(pooled)], 1)}


@pytest.mark.parametrize("size", [(37, 50), (64, 64), (33, 95)])
def test_a_pointwise_model_gets_back_exactly_its_input(size):
    """Stride 1: the logits are the image itself, so padding and crop must give back the input's own
    pixels, in place (a crop at the wrong corner or padding at the top/left shifts them)."""
    image = torch.randn(2, 3, *size)
    out = predict_at_input_size(BlockMeans(1, 32), image, ["P0"])["P0"]
    assert torch.equal(out[:, 0], image[:, 0]) and torch.equal(out[:, 1], torch.ones(2, *size))


def test_a_strided_model_upsamples_the_padded_logits_then_crops():
    """Stride 4 on a 37 x 50 image with divisor 8: padded to 40 x 56 (zeros at the bottom/right), 4x4
    block means, bilinear upsampling (align_corners False) to 40 x 56 by hand, then the top-left 37 x 50."""
    image = torch.randn(1, 3, 37, 50)
    padded = torch.zeros(1, 1, 40, 56)
    padded[..., :37, :50] = image[:, :1]
    blocks = padded.reshape(1, 1, 10, 4, 14, 4).mean((3, 5))
    # bilinear, align_corners False, factor 4: output i samples source (i + 0.5) / 4 - 0.5, clamped at 0
    src_y = ((torch.arange(40) + 0.5) / 4 - 0.5).clamp(min=0)
    src_x = ((torch.arange(56) + 0.5) / 4 - 0.5).clamp(min=0)
    y0, x0 = src_y.floor().long(), src_x.floor().long()
    y1, x1 = (y0 + 1).clamp(max=9), (x0 + 1).clamp(max=13)
    fy, fx = (src_y - y0)[:, None], (src_x - x0)[None, :]
    b = blocks[0, 0]
    up = ((1 - fy) * (1 - fx) * b[y0][:, x0] + (1 - fy) * fx * b[y0][:, x1]
          + fy * (1 - fx) * b[y1][:, x0] + fy * fx * b[y1][:, x1])
    out = predict_at_input_size(BlockMeans(4, 8), image, ["P0"])["P0"]
    assert out.shape == (1, 2, 37, 50)
    assert torch.allclose(out[0, 0], up[:37, :50], atol=1e-6)
