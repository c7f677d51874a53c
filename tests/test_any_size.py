"""Inference at any input size for every backbone: VOC's test sizes (500x375, 512x683) come out at
the input size; inputs a backbone cannot take as they are (Swin: sides not multiples of 32) are
zero-padded at the bottom/right and the logits cropped back, in the eval forward and in predict_stage_logits."""
import contextlib
import math
import warnings

import pytest
import torch
import torch.nn.functional as F

from pna.engine.evaluate import predict_stage_logits
from pna.models import ProgressiveRefinement, Segmentor, build_backbone, resize_to
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
    assert torch.allclose(predict_stage_logits(model, small)["P0"], model(small), atol=1e-6)


@torch.no_grad()
def test_padding_is_zeros_at_bottom_right_and_cropped_at_input_resolution(models):
    """mmseg's way: zero-pad the normalised image, upsample the logits to the padded size, crop."""
    model, image = models("swin_t"), torch.randn(1, 3, 100, 70)
    by_hand = resize_to(model(F.pad(image, (0, 26, 0, 28)), return_all=True)["P0"], (128, 96))[..., :100, :70]
    assert torch.allclose(model(image), by_hand, atol=1e-6)
    with pytest.raises(ValueError, match="multiples of 32"):  # the raw forward takes the input as it is
        model(image, return_all=True)


@torch.no_grad()
def test_resnet_logits_unchanged_when_no_padding_is_needed(models):
    model = models("resnet50c")
    image = torch.randn(1, 3, 500, 375)
    plain = resize_to(model.predict_all(image)["P0"], (500, 375))
    assert torch.equal(model(image), plain)  # size_divisor 1: never padded
    image = image[..., :480, :352]  # multiples of 32: a divisor of 32 pads nothing either
    before = model(image)
    model.backbone.size_divisor = 32
    try:
        with backbone_input_sizes(model) as seen:
            assert torch.equal(model(image), before)
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
    assert all(tuple(v.shape) == (1, 21, 100, 70) for v in stages.values())
    assert torch.allclose(stages["P4"], model(image), atol=1e-6)
    both = predict_at_input_size(model, image, ["P0", "P4"])
    assert torch.allclose(both["P0"], stages["P0"], atol=1e-6)
