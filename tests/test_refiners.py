"""The refiners beside PNA: SegFix's targets and offset step, its loss, DenseCRF, and every refiner
on every coarse head of the refiners table. Expected values come from hand-made label maps whose
answers are known (docs/refiners.md gives the published rules), not from the code under test."""
import math
import warnings

import numpy as np
import pytest
import torch

from pna.refiners import (BOUNDARY_DISTANCE, DIRECTION_STEPS, DenseCRFParams, apply_offsets, crf_refine, dense_crf,
                          refine_with_segfix, segfix_targets)


def _steps(direction: torch.Tensor) -> list:
    return [DIRECTION_STEPS[d] for d in direction.tolist()]


def test_beside_a_vertical_edge_the_boundary_is_five_pixels_wide_and_points_into_its_own_region():
    label = torch.zeros(1, 20, 40, dtype=torch.long)
    label[..., 20:] = 1  # columns 0-19 class 0, 20-39 class 1; 400 px each
    boundary, direction = segfix_targets(label)
    row = 10  # far from the top and bottom borders (the image border is no boundary)
    # the published width: distance <= 5, i.e. columns 15..19 (distances 5..1) and 20..24 (1..5)
    assert [c for c in range(40) if boundary[0, row, c] == 1] == list(range(15, 25))
    assert BOUNDARY_DISTANCE == 5
    # each pixel's direction points away from the edge, into the interior of its own region
    assert _steps(direction[0, row, 15:20]) == [(0, -1)] * 5
    assert _steps(direction[0, row, 20:25]) == [(0, 1)] * 5


def test_around_a_square_the_ring_is_boundary_and_each_side_points_inwards():
    label = torch.zeros(1, 40, 40, dtype=torch.long)
    label[0, 10:30, 10:30] = 2  # a 20 x 20 square (400 px) inside class 0
    boundary, direction = segfix_targets(label)
    inside = boundary[0, 10:30, 10:30]
    # a pixel of the square is within 5 px of the outside iff it is within 5 rows or columns of a side
    rows, cols = torch.meshgrid(torch.arange(20), torch.arange(20), indexing="ij")
    edge_distance = torch.minimum(torch.minimum(rows, 19 - rows), torch.minimum(cols, 19 - cols)) + 1
    assert torch.equal(inside == 1, edge_distance <= 5)
    # the middle of each side points into the square: left side right, top side down, ...
    assert _steps(direction[0, [20, 20, 10, 29], [10, 29, 20, 20]]) == [(0, 1), (0, -1), (1, 0), (-1, 0)]
    # and the class-0 pixels just outside point away from the square, into class 0
    assert _steps(direction[0, [20, 20, 9, 30], [9, 30, 20, 20]]) == [(0, -1), (0, 1), (-1, 0), (1, 0)]


def test_near_a_corner_the_distance_counts_in_whole_pixels_as_their_stored_map_does():
    label = torch.zeros(1, 40, 40, dtype=torch.long)
    label[0, 20:, 20:] = 1  # a class-1 quadrant; its corner pixel (20, 20) is the nearest to the pixels below
    boundary, _ = segfix_targets(label)
    # (dy, dx) to (20, 20): sqrt(26) = 5.10, sqrt(29) = 5.39, sqrt(32) = 5.66 truncate to 5; sqrt(37), sqrt(50) do not
    for dy, dx, expected in ((1, 5, 1), (2, 5, 1), (4, 4, 1), (1, 6, 0), (5, 5, 0)):
        assert math.floor(math.hypot(dy, dx)) <= 5 if expected else math.floor(math.hypot(dy, dx)) > 5
        assert boundary[0, 20 - dy, 20 - dx] == expected, (dy, dx)


def test_small_regions_are_all_boundary_and_ignored_pixels_are_ignored():
    label = torch.zeros(1, 40, 40, dtype=torch.long)
    label[0, 5:14, 5:14] = 1  # 81 px: under the published 100, no distance transform
    label[0, 30:, 30:] = 255
    boundary, direction = segfix_targets(label)
    assert (boundary[0, 5:14, 5:14] == 1).all()
    # ... and no direction of its own: the zero vector's angle is 0 degrees (bin 4, (0, 1)) on every
    # side, where a region with a distance transform points inwards ((0, -1) on its right side)
    assert _steps(direction[0, 9, [5, 13]]) == [(0, 1), (0, 1)]
    assert (boundary[0, 30:, 30:] == -1).all() and (direction[0, 30:, 30:] == -1).all()
    assert (boundary[0, 20, 22:25] == 0).all()  # class 0, far from everything


def test_segfix_moves_exactly_the_boundary_pixels_by_twice_their_direction():
    labels = torch.arange(10).repeat(1, 8, 1)  # every column its own class: any move is visible
    boundary_prob = torch.zeros(1, 8, 10)
    boundary_prob[0, :, 4:6] = 0.9  # two boundary columns
    boundary_prob[0, 0, 0] = 0.5    # not above the threshold
    direction = torch.zeros(1, 8, 8, 10)
    direction[0, 0] = 5.0           # bin 0: (0, -1), everywhere
    refined = refine_with_segfix(labels, boundary_prob, direction)
    moved = refined != labels
    assert torch.equal(moved[0], boundary_prob[0] > 0.5)
    assert (refined[0, :, 4:6] == torch.tensor([2, 3])).all()  # each reads 2 px to its left
    # offsets are clamped to the image: a step past the border reads the border pixel
    assert apply_offsets(labels, torch.tensor([0, -5]).view(1, 2, 1, 1).expand(1, 2, 8, 10))[0, 0, :3].tolist() == [0, 0, 0]


def test_densecrf_without_pairwise_terms_returns_the_arg_max_of_its_unary():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=(24, 32)).transpose(2, 0, 1).astype(np.float32)
    image = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    labels = dense_crf(image, probs, DenseCRFParams(w1=0.0, w2=0.0))
    assert np.array_equal(labels, probs.argmax(0))
    # with DeepLab's weights the pairwise terms do change a noisy map
    assert not np.array_equal(dense_crf(image, probs), probs.argmax(0))


def test_densecrf_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="differ in size"):
        dense_crf(np.zeros((4, 4, 3), np.uint8), np.ones((2, 5, 4), np.float32))
    with pytest.raises(ValueError, match="uint8"):
        dense_crf(np.zeros((4, 4, 3), np.float32), np.ones((2, 4, 4), np.float32))


def test_the_segfix_loss_rewards_the_published_targets_and_trains_directions_only_where_it_sees_boundary():
    from pna.models.segfix import segfix_loss

    label = torch.zeros(2, 32, 32, dtype=torch.long)
    label[:, :, 16:] = 1
    boundary, direction = segfix_targets(label)
    perfect = {"boundary": 20.0 * torch.nn.functional.one_hot(boundary, 2).permute(0, 3, 1, 2).float(),
               "direction": 20.0 * torch.nn.functional.one_hot(direction, 8).permute(0, 3, 1, 2).float()}
    assert segfix_loss(perfect, label).item() < 1e-6
    # no pixel predicted as boundary: the direction map gets no gradient, the loss is the boundary CE
    nowhere = {"boundary": torch.tensor([5.0, -5.0]).view(1, 2, 1, 1).expand(2, 2, 32, 32).clone(),
               "direction": torch.randn(2, 8, 32, 32, requires_grad=True)}
    loss = segfix_loss(nowhere, label)
    loss.backward()
    assert nowhere["direction"].grad.abs().max() == 0
    # balanced: every pixel's CE is log(1 + e^-10) (interior) or log(1 + e^10) (boundary); the class
    # weights 1 - share give the boundary pixels (10 of 32 per row) 22/32 and the others 10/32
    hit, miss = math.log1p(math.exp(-10)), math.log1p(math.exp(10))
    expected = (10 * 22 * miss + 22 * 10 * hit) / (10 * 22 + 22 * 10)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("head", ["voc_fcn_os32", "cityscapes_deeplabv3", "cityscapes_fpn"])
def test_every_refiner_gives_labels_of_the_image_size_and_of_its_classes_on_every_head(head):
    """On each head's own (smoke-profile, untrained) models: P0, DenseCRF on P0, SegFix on P0 and on
    P4, PointRend and PNA all give (1, H, W) class ids of the head's classes."""
    from pna.analysis.refiners import HEADS
    from pna.analysis.refiners_eval import _display, _segfix_at
    from pna.configs import load_config
    from pna.engine.evaluate import predict_stage_logits
    from pna.models import create_model

    classes, size = 7, (48, 64)
    models = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for role, name in HEADS[head].configs("smoke").items():
            cfg = load_config(name, "smoke")
            models[role] = create_model(cfg.model.name, classes, **cfg.model.overrides).eval()
    image = torch.randn(1, 3, *size)
    with torch.no_grad():
        p0 = predict_stage_logits(models["coarse"], image, stages=["P0"])["P0"]
        outputs = {"P0": p0.argmax(1), "PointRend": predict_stage_logits(models["pointrend"], image)["P1"].argmax(1)}
        p4 = predict_stage_logits(models["pna"], image)["P4"].argmax(1)
        run = type("Run", (), {"config": load_config(HEADS[head].segfix, "smoke")})
        maps = _segfix_at(run, models["segfix"], image, size)
        outputs.update({"PNA P4": p4, "P0 + DenseCRF": crf_refine(_display(image, size).numpy(), p0),
                        "P0 + SegFix": refine_with_segfix(outputs["P0"], maps["boundary"], maps["direction"]),
                        "PNA P4 + SegFix": refine_with_segfix(p4, maps["boundary"], maps["direction"])})
    for method, labels in outputs.items():
        assert labels.shape == (1, *size), method
        assert labels.dtype == torch.int64 and 0 <= labels.min() and labels.max() < classes, method
    assert set(maps) == {"boundary", "direction"} and maps["direction"].shape == (1, 8, *size)


class _LabelInImage(torch.utils.data.Dataset):
    """Two 32 x 32 images whose first channel is the label map (a stand-in network can read it)."""

    ignore_index = 255

    def __len__(self):
        return 2

    def __getitem__(self, index):
        label = torch.zeros(32, 32, dtype=torch.long)
        label[:, 12 + 4 * index:] = 1
        return {"image": torch.stack([label.float()] * 3), "label": label, "id": str(index)}


def test_a_segfix_run_is_scored_on_its_own_two_jobs():
    """A network that predicts the published targets exactly scores 1 everywhere; one that calls every
    pixel boundary finds them all at a precision of their share; one that calls none finds none."""
    from pna.engine.segfix_eval import evaluate_segfix
    from pna.models.segfix import SegFixHead, SegFixNet

    class Oracle(SegFixNet):
        def __init__(self, boundary: str):
            super().__init__(torch.nn.Identity(), SegFixHead([1], 4))
            self.boundary = boundary

        def predict_maps(self, images):
            target, direction = segfix_targets(images[:, 0].round().long())
            hot = torch.nn.functional.one_hot(target.clamp(min=0), 2).permute(0, 3, 1, 2).float()
            constant = {"nowhere": [1.0, 0.0], "everywhere": [0.0, 1.0]}.get(self.boundary)
            hot = hot if constant is None else hot * 0 + torch.tensor(constant).view(1, 2, 1, 1)
            return {"boundary": 10 * hot,
                    "direction": 10 * torch.nn.functional.one_hot(direction.clamp(min=0), 8).permute(0, 3, 1, 2).float()}

    perfect = evaluate_segfix(Oracle("exact"), _LabelInImage())["segfix"]
    assert {k: perfect[k] for k in ("boundary_precision", "boundary_recall", "boundary_f1", "direction_accuracy")} == \
        {"boundary_precision": 1.0, "boundary_recall": 1.0, "boundary_f1": 1.0, "direction_accuracy": 1.0}
    assert perfect["boundary_pixels"] == 2 * 32 * 10  # 10 boundary columns in each image
    # boundary everywhere: every true boundary pixel found (with its right direction), 640 of 2048 right
    everywhere = evaluate_segfix(Oracle("everywhere"), _LabelInImage())["segfix"]
    assert (everywhere["boundary_precision"], everywhere["boundary_recall"], everywhere["direction_accuracy"]) == \
        (640 / 2048, 1.0, 1.0)
    blind = evaluate_segfix(Oracle("nowhere"), _LabelInImage())
    assert blind["segfix"]["boundary_recall"] == 0.0 and blind["segfix"]["boundary_precision"] is None
    assert blind["stages"] == {} and blind["mIoU"] is None and blind["num_images"] == 2


def test_densecrf_parameters_are_deeplabs_by_name():
    """DeepLab v2 ResNet-101 (VOC) and DeepLab v1 LargeFOV, as docs/refiners.md transcribes their releases:
    (iterations, w1, theta_alpha, theta_beta, w2, theta_gamma)."""
    from pna.refiners import crf_params

    assert crf_params("deeplab_v2") == DenseCRFParams(10, 4.0, 67.0, 3.0, 3.0, 1.0)
    assert crf_params("deeplab_v1") == DenseCRFParams(10, 4.0, 49.0, 5.0, 3.0, 3.0)
    with pytest.raises(ValueError, match="unknown DenseCRF parameters 'deeplab_v3'"):
        crf_params("deeplab_v3")
