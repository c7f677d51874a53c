"""Backbones, heads, Segmentor outputs, loss and registry of pna.models (small models, CPU)."""
import math
import warnings

import pytest
import timm
import torch
import torch.nn.functional as F

from pna.models import SegmentationLoss, build_backbone, create_model, get_spec, list_models

SMALL = dict(backbone="resnet18c", embed_dims=(64, 32, 32, 32), head_channels=16, aux_channels=8, window_size=3)
TABLE1 = ["fcn_r50_os32", "fcn_r50_os8", "fcn_r50_os32_pna_nam", "fcn_r50_os32_pna"]


@pytest.fixture(autouse=True)
def _quiet_random_init():
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*RANDOMLY INITIALISED.*")
        yield


def strides(outputs, size=64):
    return {name: size // logits.shape[-1] for name, logits in outputs.items()}


@pytest.mark.parametrize("name", TABLE1)
def test_table1_rows_output_shapes_and_strides(name):
    model = create_model(name, num_classes=5, **SMALL).train()
    images = torch.randn(2, 3, 64, 64)
    outputs = model(images)
    refined = "pna" in name
    os_ = 8 if "os8" in name else 32
    expected = {"P0": os_, "aux": min(os_, 16)}
    if refined:
        expected.update(P1=32, P2=16, P3=8, P4=4)
    assert strides(outputs) == expected
    assert all(o.shape[:2] == (2, 5) for o in outputs.values())
    assert model.stage_names == (["P0", "P1", "P2", "P3", "P4"] if refined else ["P0"])
    model.eval()
    with torch.no_grad():
        assert model(images).shape == (2, 5, 64, 64)
        assert set(model(images, return_all=True)) == set(model.stage_names)  # no aux in eval


def test_real_resnet50c_pna_table1_params_and_shapes():
    model = create_model("fcn_r50_os32_pna", num_classes=21).eval()
    total = sum(p.numel() for p in model.parameters())
    sam = sum(p.numel() for stage in model.refine.stages for p in stage.sam.parameters())
    refine = sum(p.numel() for p in model.refine.parameters())
    aux = sum(p.numel() for p in model.aux_head.parameters())
    # Paper Table 1: 65.9 M (NAM+SAM), 56.4 M (NAM), 49.5 M (FCN); the aux head is counted.
    assert (round(total / 1e6, 1), round((total - sam) / 1e6, 1), round((total - refine) / 1e6, 1)) == (65.9, 56.4, 49.5)
    assert round((total - refine - aux) / 1e6, 1) == 47.1
    assert [s.nam.num_heads for s in model.refine.stages] == [24, 12, 6, 3]
    with torch.no_grad():
        outputs = model(torch.randn(1, 3, 64, 64), return_all=True)
    assert strides(outputs) == {"P0": 32, "P1": 32, "P2": 16, "P3": 8, "P4": 4}
    assert all(o.shape[1] == 21 for o in outputs.values())


# Stage strides and dilations (docs/architecture.md, "Backbones"); a dilated stage's first block uses the previous
# dilation (mmseg contract_dilation=True), which timm's output_stride does.
@pytest.mark.parametrize("output_stride,stage_strides,stage_dilations", [
    (32, (1, 2, 2, 2), (1, 1, 1, 1)), (16, (1, 2, 2, 1), (1, 1, 1, 2)), (8, (1, 2, 1, 1), (1, 1, 2, 4))])
def test_resnet50c_output_stride_strides_and_dilations(output_stride, stage_strides, stage_dilations):
    net = build_backbone("resnet50c", output_stride=output_stride)
    assert net.out_channels == [256, 512, 1024, 2048]
    stem = [m for m in net.body.conv1 if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in stem] == [(3, 32, (3, 3)), (32, 32, (3, 3)), (32, 64, (3, 3))]
    previous = 1
    for i, (stride, dilation) in enumerate(zip(stage_strides, stage_dilations)):
        blocks = list(getattr(net.body, f"layer{i + 1}"))
        assert blocks[0].conv2.stride == (stride, stride) and blocks[0].downsample[0].stride == (stride, stride)
        got = [b.conv2.dilation[0] for b in blocks]
        assert got == [previous] + [dilation] * (len(blocks) - 1)
        assert all(b.conv2.padding == b.conv2.dilation for b in blocks)
        previous = dilation
    sizes = [f.shape[-1] for f in net(torch.zeros(1, 3, 64, 64))]
    assert sizes == [16, 8, 64 // min(16, output_stride), 64 // output_stride]


def test_pretrained_missing_file_and_random_init_warning(tmp_path):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        build_backbone("resnet18c", pretrained=str(missing))
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        with pytest.warns(UserWarning, match="RANDOMLY INITIALISED"):
            build_backbone("resnet18c")
    with pytest.raises(ValueError, match="resnet50c"):
        build_backbone("resnet51")


def test_pretrained_local_file_round_trip(tmp_path):
    source = timm.create_model("resnet18", stem_type="deep", stem_width=32)
    path = tmp_path / "r18c.pth"
    torch.save(source.state_dict(), path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a weights file given: no random-init warning
        net = build_backbone("resnet18c", pretrained=str(path))
    loaded = net.body.state_dict()
    expected = source.state_dict()
    assert len(loaded) > 50 and all(torch.equal(t, expected[k]) for k, t in loaded.items())


def test_registry_errors_and_overrides():
    assert set(TABLE1) <= set(list_models())
    with pytest.raises(ValueError, match="fcn_r50_os32"):
        create_model("fcn_r51", 21)
    with pytest.raises(ValueError, match="window_size"):
        get_spec("fcn_r50_os32_pna", window=7)
    with pytest.raises(ValueError, match="refine"):
        get_spec("fcn_r50_os32", refine="sam")
    spec = get_spec("fcn_r50_os32_pna", window_size=7, embed_dims=[128, 64, 32, 32], aux=False)
    assert (spec.window_size, spec.embed_dims, spec.aux, spec.refine) == (7, (128, 64, 32, 32), False, "nam+sam")
    model = create_model("fcn_r50_os32_pna_nam", 4, **{**SMALL, "window_size": 5, "aux": False})
    assert model.aux_head is None and model.refine.stages[0].nam.window_size == 5
    assert isinstance(model.refine.stages[0].sam, torch.nn.Identity)
    assert model.head.convs[0][0].out_channels == 16


def test_loss_weights_hand_computed():
    labels = torch.tensor([[[0, 1], [1, 255]]])
    p0 = torch.zeros(1, 2, 2, 2)  # uniform: ln 2 per pixel
    p1 = torch.zeros(1, 2, 2, 2)
    p1[0, 0] = 1.0  # class 0 favoured by 1: CE is log(1 + e^-1) for label 0, log(1 + e^1) for label 1
    aux = torch.zeros(1, 2, 1, 1)  # upsampled stays uniform
    total, parts = SegmentationLoss()({"P0": p0, "P1": p1, "aux": aux}, labels)
    ce1 = (math.log(1 + math.exp(-1)) + 2 * math.log(1 + math.exp(1))) / 3
    assert parts["P0"].item() == pytest.approx(math.log(2))
    assert parts["P1"].item() == pytest.approx(ce1)
    assert total.item() == pytest.approx(1.0 * math.log(2) + 0.1 * ce1 + 0.4 * math.log(2))
    custom, _ = SegmentationLoss(stage_weights={"P0": 2.0, "P1": 0.5}, aux_weight=0.0)({"P0": p0, "P1": p1, "aux": aux}, labels)
    assert custom.item() == pytest.approx(2 * math.log(2) + 0.5 * ce1)
    with pytest.raises(ValueError, match="P7"):
        SegmentationLoss()({"P7": p0}, labels)


def test_every_refinement_stage_weighs_a_tenth():
    """docs/architecture.md, Losses: coarse head 1.0, each PNA stage 0.1, aux 0.4; uniform logits over 2
    classes cost ln 2 per pixel, so the total is ln 2 x (1 + 4 x 0.1 + 0.4)."""
    labels = torch.tensor([[[0, 1], [1, 0]]])
    outputs = {name: torch.zeros(1, 2, 2, 2) for name in ("P0", "P1", "P2", "P3", "P4", "aux")}
    total, parts = SegmentationLoss()(outputs, labels)
    assert all(part.item() == pytest.approx(math.log(2)) for part in parts.values())
    assert total.item() == pytest.approx(math.log(2) * (1 + 4 * 0.1 + 0.4))
    for stage in ("P1", "P2", "P3", "P4"):  # one stage at a time: each adds 0.1 x its own loss
        alone = {"P0": outputs["P0"], stage: torch.zeros(1, 2, 2, 2)}
        alone[stage][0, 0] = 2.0  # label 0 pixels cost log(1 + e^-2), label 1 pixels log(1 + e^2)
        ce = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(2))) / 2
        assert SegmentationLoss()(alone, labels)[0].item() == pytest.approx(math.log(2) + 0.1 * ce), stage


def test_loss_ignores_255_and_upsamples_bilinearly():
    labels = torch.randint(0, 3, (2, 8, 8))
    labels[:, :3] = 255
    logits = torch.randn(2, 3, 4, 4)
    loss = SegmentationLoss()
    _, parts = loss({"P0": logits}, labels)
    up = F.interpolate(logits, size=(8, 8), mode="bilinear", align_corners=False)
    keep = labels != 255
    expected = F.cross_entropy(up.permute(0, 2, 3, 1)[keep], labels[keep])
    assert parts["P0"].item() == pytest.approx(expected.item())
    everything_ignored = torch.full((1, 8, 8), 255)
    assert loss({"P0": logits[:1]}, everything_ignored)[0].item() == 0.0


def test_hard_pixel_mining_keeps_exactly_the_top_fraction():
    labels = torch.zeros(1, 1, 12, dtype=torch.long)
    labels[..., 10:] = 255  # 10 valid pixels
    logits = torch.zeros(1, 2, 1, 12)
    logits[0, 1, 0, :] = torch.arange(12.0)  # growing loss for label 0 along the row
    per_pixel = F.cross_entropy(logits, labels, ignore_index=255, reduction="none")[0, 0, :10]
    _, parts = SegmentationLoss(hard_pixel_fraction=0.2)({"P0": logits}, labels)
    assert parts["P0"].item() == pytest.approx(per_pixel.sort(descending=True).values[:2].mean().item())
    with pytest.raises(ValueError, match="hard_pixel_fraction"):
        SegmentationLoss(hard_pixel_fraction=1.5)


def test_hard_pixel_mining_counts_ignored_pixels_in_k():
    """k = fraction x ALL pixels, ignored ones included with loss 0 (docs/authors_audit_findings.md,
    "Hard-pixel mining per process/GPU"):
    20 pixels, 10 of them ignored, fraction 0.2: the mean of the 4 largest losses, not of the 2 largest."""
    labels = torch.zeros(1, 1, 20, dtype=torch.long)
    labels[..., 10:] = 255
    logits = torch.zeros(1, 2, 1, 20)
    logits[0, 1, 0, :10] = torch.arange(10.0)  # label 0 everywhere: loss log(1 + e^x) grows with x
    _, parts = SegmentationLoss(hard_pixel_fraction=0.2)({"P0": logits}, labels)
    expected = sum(math.log(1 + math.exp(x)) for x in (9, 8, 7, 6)) / 4
    assert parts["P0"].item() == pytest.approx(expected, rel=1e-6)
    # 15 of 20 ignored, fraction 0.3: k = 6, the 5 valid losses log(1 + e^x), x = 0..4, and one ignored 0
    labels[..., 5:] = 255
    _, parts = SegmentationLoss(hard_pixel_fraction=0.3)({"P0": logits}, labels)
    assert parts["P0"].item() == pytest.approx(sum(math.log(1 + math.exp(x)) for x in range(5)) / 6, rel=1e-6)


def test_training_step_reaches_every_parameter():
    model = create_model("fcn_r50_os32_pna", 3, **SMALL).train()
    for module in model.modules():  # timm zero-inits each block's last BN, which blocks the branch's grads
        if isinstance(module, torch.nn.BatchNorm2d):
            torch.nn.init.ones_(module.weight)
    images, labels = torch.randn(2, 3, 64, 64), torch.randint(0, 3, (2, 64, 64))
    outputs = model(images)
    assert set(outputs) == {"P0", "P1", "P2", "P3", "P4", "aux"}
    total, parts = SegmentationLoss()(outputs, labels)
    total.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    assert torch.isfinite(total) and set(parts) == set(outputs)
