"""PointRend baseline: point sampling on uncertain pixels, subdivision, point loss, a training step."""
import warnings

import pytest
import torch

from pna.models import SegmentationLoss, create_model
from pna.models.pointrend import (
    PointHead, PointRend, PointRendConfig, most_uncertain_grid_points, point_cross_entropy, point_sample,
    sample_uncertain_points, uncertainty,
)


def half_uncertain_logits(size: int = 16) -> torch.Tensor:
    """Two classes tie on the left half (uncertain), class 0 wins by 10 on the right half."""
    logits = torch.zeros(2, 3, size, size)
    logits[:, 0, :, size // 2:] = 10.0
    return logits


def test_uncertainty_is_minus_the_top2_margin():
    logits = torch.tensor([[3.0, 1.0, 2.5], [0.0, 5.0, -1.0]]).T.reshape(1, 3, 1, 2)
    assert torch.allclose(uncertainty(logits).flatten(), torch.tensor([-0.5, -5.0]))


def test_training_points_fall_on_the_most_uncertain_pixels():
    torch.manual_seed(0)
    coords = sample_uncertain_points(half_uncertain_logits(), num_points=400, oversample_ratio=3,
                                     importance_ratio=0.75)
    assert coords.shape == (2, 400, 2) and coords.min() >= 0 and coords.max() <= 1
    important, rest = coords[:, :300], coords[:, 300:]
    assert (important[..., 0] < 0.5).all()               # every importance point on the tied half
    assert 0.2 < (rest[..., 0] < 0.5).float().mean() < 0.8  # the random quarter is spread over both


def test_importance_ratio_zero_gives_uniform_points():
    torch.manual_seed(0)
    coords = sample_uncertain_points(half_uncertain_logits(), 2000, importance_ratio=0.0)
    assert abs((coords[..., 0] < 0.5).float().mean().item() - 0.5) < 0.05


def test_grid_points_are_the_most_uncertain_pixel_centres():
    logits = torch.zeros(1, 2, 4, 6)
    logits[0, 0] = 5.0
    logits[0, 0, 1, 4] = 0.0  # the only tie
    logits[0, 0, 3, 0] = 1.0  # second most uncertain
    indices, coords = most_uncertain_grid_points(logits, 2)
    assert indices.tolist() == [[1 * 6 + 4, 3 * 6 + 0]]
    assert torch.allclose(coords, torch.tensor([[[4.5 / 6, 1.5 / 4], [0.5 / 6, 3.5 / 4]]]))
    # sampling the map at those centres gives back the exact pixel values
    assert torch.allclose(point_sample(logits, coords)[0, 0], torch.tensor([0.0, 1.0]))


def test_subdivision_output_size_and_only_uncertain_points_change():
    torch.manual_seed(0)
    cfg = PointRendConfig(subdivision_steps=2, subdivision_num_points=10)
    pr = PointRend(fine_channels=4, num_classes=3, channels=8, config=cfg).eval()
    fine, coarse = torch.randn(1, 4, 32, 32), torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        out = pr.subdivide(fine, coarse)
    assert out.shape == (1, 3, 32, 32)
    # one step: bilinear x2 everywhere except the 10 re-classified points
    one = PointRend(4, 3, 8, config=PointRendConfig(subdivision_steps=1, subdivision_num_points=10))
    one.load_state_dict(pr.state_dict())
    with torch.no_grad():
        refined = one.subdivide(fine, coarse)
    upsampled = torch.nn.functional.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=False)
    changed = (refined != upsampled).any(1).flatten()
    expected, _ = most_uncertain_grid_points(upsampled, 10)
    assert set(changed.nonzero().flatten().tolist()) <= set(expected.flatten().tolist())
    assert changed.sum() == 10
    # more points than pixels re-classifies every pixel; zero steps returns the coarse map
    every = PointRend(4, 3, 8, config=PointRendConfig(subdivision_steps=1, subdivision_num_points=10**6))
    with torch.no_grad():
        assert (every.subdivide(fine, coarse) != upsampled).any(1).all()
    zero = PointRend(4, 3, 8, config=PointRendConfig(subdivision_steps=0))
    assert torch.equal(zero.subdivide(fine, coarse), coarse)


def test_point_head_concatenates_coarse_logits_before_every_layer():
    head = PointHead(fine_channels=4, num_classes=3, channels=8, num_fcs=3)
    assert [fc[0].in_channels for fc in head.fcs] == [4 + 3, 8 + 3, 8 + 3]
    assert head.classifier.in_channels == 8 + 3 and head.classifier.out_channels == 3


def test_point_loss_reads_labels_nearest_and_ignores_255():
    labels = torch.tensor([[[0, 2], [255, 1]]])
    coords = torch.tensor([[[0.2, 0.2], [0.9, 0.1], [0.1, 0.9], [0.7, 0.7]]])  # -> 0, 2, 255, 1
    logits = torch.full((1, 3, 4), -20.0)
    logits[0, 0, 0] = logits[0, 2, 1] = logits[0, 1, 3] = 20.0
    assert point_cross_entropy({"logits": logits, "coords": coords}, labels).item() < 1e-6
    wrong = logits.roll(1, dims=1)
    assert point_cross_entropy({"logits": wrong, "coords": coords}, labels).item() > 10
    every_ignored = torch.full_like(labels, 255)
    assert point_cross_entropy({"logits": logits.requires_grad_(), "coords": coords}, every_ignored).item() == 0


@pytest.mark.parametrize("name", ["fpn_r50_pointrend", "deeplabv3_r50_os16_pointrend"])
def test_pointrend_model_training_step_and_inference(name):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = create_model(name, 4, backbone="resnet18c", head_channels=16).train()
    images, labels = torch.randn(2, 3, 32, 32), torch.randint(0, 4, (2, 32, 32))
    outputs = model(images)
    assert outputs["points"]["logits"].shape == (2, 4, 2048) and outputs["points"]["coords"].shape == (2, 2048, 2)
    total, parts = SegmentationLoss()(outputs, labels)
    assert "points" in parts and parts["points"] > 0
    total.backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    with torch.no_grad():
        stages = model(images, return_all=True)
        assert model.stage_names == ["P0", "P1"]
        assert stages["P1"].shape[-1] == 4 * stages["P0"].shape[-1]  # two x2 subdivision steps
        assert model(images).shape == (2, 4, 32, 32)


@pytest.mark.parametrize("config", ["cityscapes/fpn_r103_pointrend", "voc/deeplabv3_r101_os16_pointrend"])
def test_the_point_head_is_mmsegs_256_wide_in_the_paper_profile_and_the_heads_width_in_smoke(config):
    """MMSeg's PointHead: channels=256, num_fcs=3 (configs/_base_/models/pointrend_r50.py in the
    authors' mmsegmentation branch); the smoke profile narrows it to its heads' 64 channels."""
    from pna.configs import load_config
    from pna.engine.build import create_model_of

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        widths = {}
        for profile in ("paper", "smoke"):
            cfg = load_config(config, profile)
            cfg.model.overrides.update(backbone="resnet18c", pretrained=None)  # the width, not the backbone, is checked
            model = create_model_of(cfg, 19)
            fcs = [m for m in model.pointrend.point_head.modules() if isinstance(m, torch.nn.Conv1d)]
            widths[profile] = [m.out_channels for m in fcs]
    assert widths == {"paper": [256, 256, 256, 19], "smoke": [64, 64, 64, 19]}
