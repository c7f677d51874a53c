"""Boundary IoU, trimap mIoU and boundary F-score against independent references: scipy's
chessboard distance transform and iterated 3x3 erosion (Boundary IoU's reference definition), a
scipy re-derivation of all three metrics, and values computed by hand on small masks."""
import math

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from pna.engine.boundary import BoundaryMetrics, BoundarySettings, pixels_of, update_stages
from pna.engine.metrics import ConfusionMatrix
from pna.engine.morphology import mask_boundary, transition_band

SQUARE = np.ones((3, 3), dtype=bool)
IGNORE = 255


def random_mask(rng, height: int, width: int) -> np.ndarray:
    return ndi.binary_dilation(rng.random((height, width)) < 0.08, iterations=int(rng.integers(0, 4)))


def random_label(rng, height: int, width: int, classes: int, ignored: bool = True) -> np.ndarray:
    """Blobs of `classes` classes (nearest-upsampled coarse noise), a few ignored blobs."""
    cell = int(rng.integers(3, 9))
    coarse = rng.integers(0, classes, (height // cell + 1, width // cell + 1))
    label = np.kron(coarse, np.ones((cell, cell), dtype=np.int64))[:height, :width]
    label = ndi.shift(label, (rng.integers(0, cell), rng.integers(0, cell)), order=0, mode="nearest")
    if ignored:
        label[random_mask(rng, height, width) & (rng.random((height, width)) < 0.6)] = IGNORE
    return label


def perturbed(rng, label: np.ndarray, classes: int) -> np.ndarray:
    """A prediction: the label shifted by a pixel or two, with some blobs of random classes."""
    pred = np.roll(np.where(label == IGNORE, 0, label), tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
    blobs = random_mask(rng, *label.shape)
    pred[blobs] = rng.integers(0, classes, blobs.sum())
    return pred


# --- the boundary region of one binary mask --------------------------------------------------------------

def test_boundary_region_equals_distance_transform_and_iterated_erosion():
    rng = np.random.default_rng(0)
    for _ in range(60):
        height, width = rng.integers(1, 30, 2)
        mask, d = random_mask(rng, height, width), int(rng.integers(1, 9))  # d up to 8: images smaller than d
        ours = mask_boundary(torch.from_numpy(mask), d).numpy()
        # mask pixels within chessboard distance d of a background pixel, the outside being background
        distance = ndi.distance_transform_cdt(np.pad(mask, 1), metric="chessboard")[1:-1, 1:-1]
        assert np.array_equal(ours, mask & (distance <= d)), (height, width, d)
        # the reference's construction: the mask minus d 3x3 erosions, padding with background
        eroded = ndi.binary_erosion(mask, SQUARE, iterations=d, border_value=0) if mask.any() else mask
        assert np.array_equal(ours, mask & ~eroded), (height, width, d)


def test_image_border_is_boundary_and_a_small_image_is_all_boundary():
    full = torch.ones(6, 7, dtype=torch.bool)
    ring = mask_boundary(full, 1)
    assert ring.sum() == 6 * 7 - 4 * 5 and not ring[1:-1, 1:-1].any()  # the frame only
    assert mask_boundary(full, 3).all()  # 6 rows < 2 * 3 + 1: the erosion empties the mask
    assert pixels_of(0.02, 10, 10) == 1 and pixels_of(0.02, 1024, 2048) == 46


def test_trimap_band_is_distance_to_another_label_inside_the_image():
    rng = np.random.default_rng(1)
    for _ in range(20):
        label = random_label(rng, *rng.integers(8, 40, 2), classes=3)
        width = int(rng.integers(1, 7))
        nearest_other = np.full(label.shape, np.inf)
        for value in np.unique(label):
            same = label == value
            if not same.all():
                nearest_other[same] = ndi.distance_transform_cdt(same, metric="chessboard")[same]
        ours = transition_band(torch.from_numpy(label), width).numpy()
        assert np.array_equal(ours, nearest_other <= width)


# --- all three metrics against a scipy re-derivation -----------------------------------------------------

def reference_metrics(pairs, classes: int, settings: BoundarySettings) -> dict:
    """Every count from scipy masks, class by class and image by image."""
    inter, union = np.zeros(classes), np.zeros(classes)
    hits = np.zeros((4, classes))  # predicted contour matched, all; label contour matched, all
    confusion = np.zeros((len(settings.trimap_widths), classes, classes))
    for label, pred in pairs:
        valid = label != IGNORE
        d = pixels_of(settings.dilation_ratio, *label.shape)
        t = pixels_of(settings.f_tolerance_ratio, *label.shape)
        for c in range(classes):
            g, p = label == c, (pred == c) & valid
            gb = g & ~ndi.binary_erosion(g, SQUARE, iterations=d, border_value=0)
            pb = p & ~ndi.binary_erosion(p, SQUARE, iterations=d, border_value=0)
            inter[c] += (gb & pb).sum()
            union[c] += (gb | pb).sum()
            # contour: an 8-neighbour inside the image that is not of the class (border_value=1)
            gc, pc = g & ~ndi.binary_erosion(g, SQUARE, border_value=1), p & ~ndi.binary_erosion(p, SQUARE, border_value=1)
            window = np.ones((2 * t + 1, 2 * t + 1), dtype=bool)
            hits[:, c] += [(pc & ndi.binary_dilation(gc, window)).sum(), pc.sum(),
                           (gc & ndi.binary_dilation(pc, window)).sum(), gc.sum()]
        nearest_other = np.full(label.shape, np.inf)
        for value in np.unique(label):
            same = label == value
            if not same.all():
                nearest_other[same] = ndi.distance_transform_cdt(same, metric="chessboard")[same]
        for k, width in enumerate(settings.trimap_widths):
            band = valid & (nearest_other <= width)
            np.add.at(confusion[k], (label[band], pred[band]), 1)

    def mean(values):
        values = values[~np.isnan(values)]
        return float(values.mean()) if len(values) else float("nan")

    with np.errstate(invalid="ignore", divide="ignore"):
        biou = inter / union
        precision, recall = np.nan_to_num(hits[0] / hits[1]), np.nan_to_num(hits[2] / hits[3])
        f = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
        f[hits[1] + hits[3] == 0] = np.nan
        tp = confusion.diagonal(axis1=1, axis2=2)
        trimap = tp / (confusion.sum(1) + confusion.sum(2) - tp)
    return {"boundary_iou": mean(biou), "boundary_f": mean(f),
            "trimap_miou": {str(w): mean(row) for w, row in zip(settings.trimap_widths, trimap)}}


@pytest.mark.parametrize("settings", [BoundarySettings(), BoundarySettings(0.05, (1, 3, 6), 0.03)])
def test_metrics_equal_a_scipy_rederivation(settings):
    rng = np.random.default_rng(2)
    classes = 4
    pairs = []
    for _ in range(6):
        label = random_label(rng, *rng.integers(12, 70, 2), classes)
        pairs.append((label, perturbed(rng, label, classes)))
    metrics = BoundaryMetrics(classes, settings=settings)
    for label, pred in pairs:  # images of different sizes, streamed one by one
        metrics.update(torch.from_numpy(pred), torch.from_numpy(label))
    ours, expected = metrics.summary(), reference_metrics(pairs, classes, settings)
    assert ours["boundary_iou"]["mean"] == pytest.approx(expected["boundary_iou"], abs=1e-12)
    assert ours["boundary_f"]["mean"] == pytest.approx(expected["boundary_f"], abs=1e-12)
    assert ours["trimap_miou"] == pytest.approx(expected["trimap_miou"], abs=1e-12)
    assert 0 < expected["boundary_iou"] < 1 and 0 < expected["boundary_f"] < 1  # a case that tests something


# --- hand-computed values ----------------------------------------------------------------------------

ONE_PX = BoundarySettings(dilation_ratio=0.1, trimap_widths=(1, 2), f_tolerance_ratio=0.1)  # 6x6: d = t = 1


def square_case():
    """6x6: a 4x4 square of class 1 at rows/cols 1-4 on class 0; predicted one column to the right."""
    label = torch.zeros(6, 6, dtype=torch.long)
    label[1:5, 1:5] = 1
    pred = torch.zeros(6, 6, dtype=torch.long)
    pred[1:5, 2:6] = 1
    return label, pred


def test_hand_computed_boundary_iou_trimap_and_f_score():
    label, pred = square_case()
    metrics = BoundaryMetrics(2, settings=ONE_PX)
    metrics.update(pred, label)
    # Boundary IoU, d = 1. Class 1: each square minus its 2x2 interior, 12 px each (the predicted
    # one touches the image border, which counts as background); they share rows 1 and 4 at
    # columns 2-4: 6 px -> 6 / 18. Class 0: every pixel of both masks is boundary (20 px each:
    # the frame, or next to the square); they share the frame minus column 5's rows 1-4 -> 16 / 24.
    assert metrics.boundary_iou().tolist() == pytest.approx([16 / 24, 6 / 18])
    # Trimap. Width 1: the 20 frame pixels (all touch the square) and the square's 12 outer
    # pixels; confusion [[16, 4], [4, 8]] -> IoU 16/24 and 8/16. Width 2: every pixel: the plain
    # IoU, 16/24 and 12/20.
    assert metrics.trimap_miou() == pytest.approx({1: (16 / 24 + 8 / 16) / 2, 2: (16 / 24 + 12 / 20) / 2})
    # F-score, tolerance 1, the border is no contour. Class 1: label contour 12 px, predicted 10
    # (its pixels on the right border at rows 2-3 have only class-1 neighbours): all matched.
    # Class 0: predicted contour 14 px, all matched; label contour 20 px (the frame), of which
    # column 5's rows 2-3 have no predicted class-0 contour within 1 px: recall 18/20, F = 18/19.
    assert metrics.boundary_f().tolist() == pytest.approx([18 / 19, 1.0])
    assert metrics.contours[:, 0].tolist() == [14, 14, 18, 20] and metrics.contours[:, 1].tolist() == [10, 10, 12, 12]
    summary = metrics.summary(["bg", "square"])
    assert summary["boundary_iou"]["mean"] == pytest.approx(0.5)
    assert summary["boundary_f"]["per_class"] == pytest.approx({"bg": 18 / 19, "square": 1.0})
    assert summary["trimap_miou"] == pytest.approx({"1": 7 / 12, "2": (16 / 24 + 12 / 20) / 2})


def test_a_class_absent_everywhere_is_left_out_and_eval_classes_are_respected():
    label, pred = square_case()
    metrics = BoundaryMetrics(3, settings=ONE_PX)  # class 2 never appears
    metrics.update(pred, label)
    assert math.isnan(metrics.boundary_iou()[2]) and math.isnan(metrics.boundary_f()[2])
    summary = metrics.summary()
    assert summary["boundary_iou"]["mean"] == pytest.approx(0.5) and summary["boundary_iou"]["per_class"]["2"] is None
    assert summary["trimap_miou"]["1"] == pytest.approx(7 / 12)
    only_square = BoundaryMetrics(2, eval_classes=[1], settings=ONE_PX)
    only_square.update(pred, label)
    assert only_square.summary()["boundary_iou"] == {"mean": pytest.approx(1 / 3), "per_class": {"1": pytest.approx(1 / 3)}}


def test_ignored_pixels_are_never_boundary_and_their_predictions_do_not_count():
    label = torch.zeros(9, 9, dtype=torch.long)
    label[3:6, 3:6] = IGNORE
    pred = torch.zeros(9, 9, dtype=torch.long)
    pred[4, 4] = 1  # a prediction of class 1 on an ignored pixel only
    metrics = BoundaryMetrics(2, settings=ONE_PX)
    ref = metrics.label_maps(label)
    assert not ref.boundary[0, 3:6, 3:6].any() and not ref.contour[0, 3:6, 3:6].any()
    # class 0's region has boundary around the ignored block, as at the image border
    assert ref.boundary[0, 2, 2:7].all() and ref.boundary[0, 0].all() and not ref.boundary[0, 1, 1:8].any()
    metrics.update(pred, ref)
    summary = metrics.summary()
    assert summary["boundary_iou"]["per_class"] == {"0": 1.0, "1": None}
    assert summary["boundary_f"]["per_class"] == {"0": 1.0, "1": None}
    assert summary["trimap_miou"] == {"1": 1.0, "2": 1.0}


# --- properties ---------------------------------------------------------------------------------------

def test_a_prediction_equal_to_the_label_scores_100():
    rng = np.random.default_rng(3)
    metrics = BoundaryMetrics(5)
    for _ in range(4):
        label = torch.from_numpy(random_label(rng, *rng.integers(20, 90, 2), classes=5))
        pred = label.clone()
        pred[label == IGNORE] = torch.randint(0, 5, (int((label == IGNORE).sum()),))  # anything where ignored
        metrics.update(pred, label)
    summary = metrics.summary()
    assert summary["boundary_iou"]["mean"] == 1.0 and summary["boundary_f"]["mean"] == 1.0
    assert set(summary["trimap_miou"].values()) == {1.0}


def test_boundary_iou_ignores_the_interior_mask_iou_does_not():
    """Hollowing both masks down to their boundary regions leaves Boundary IoU as it is."""
    label = torch.zeros(64, 64, dtype=torch.long)
    label[8:56, 8:56] = 1
    pred = torch.roll(label, (2, 3), (0, 1))
    settings = BoundarySettings(dilation_ratio=0.05)  # d = round(0.05 * 90.5) = 5
    d = pixels_of(0.05, 64, 64)

    def scores(p, g):
        boundary, confusion = BoundaryMetrics(2, eval_classes=[1], settings=settings), ConfusionMatrix(2, eval_classes=[1])
        boundary.update(p, g)
        confusion.update(p, g)
        return boundary.boundary_iou()[1].item(), confusion.iou()[1].item()

    hollow = lambda m: torch.where(mask_boundary(m == 1, d), 1, 0)  # noqa: E731
    assert (hollow(label) != label).sum() > 1000  # the interior is most of the square
    full, hollowed = scores(pred, label), scores(hollow(pred), hollow(label))
    assert hollowed[0] == pytest.approx(full[0]) and hollowed[1] < full[1] - 0.2


def test_a_shifted_prediction_scores_lower_at_small_d_than_at_large_d():
    label = torch.zeros(80, 80, dtype=torch.long)
    label[20:60, 20:60] = 1
    pred = torch.roll(label, (2, 2), (0, 1))
    values = []
    for ratio in (0.01, 0.05, 0.2):
        metrics = BoundaryMetrics(2, settings=BoundarySettings(dilation_ratio=ratio))
        metrics.update(pred, label)
        values.append(metrics.summary()["boundary_iou"]["mean"])
    assert values[0] < values[1] < values[2] < 1
    # with d beyond half the image every pixel is boundary: Boundary IoU is the mask IoU
    confusion = ConfusionMatrix(2)
    confusion.update(pred, label)
    wide = BoundaryMetrics(2, settings=BoundarySettings(dilation_ratio=0.5))
    wide.update(pred, label)
    assert wide.summary()["boundary_iou"]["mean"] == pytest.approx(confusion.miou())


def test_streaming_two_batches_equals_one_batch_of_both():
    rng = np.random.default_rng(4)
    labels = torch.from_numpy(np.stack([random_label(rng, 40, 56, 3) for _ in range(2)]))
    preds = torch.from_numpy(np.stack([perturbed(rng, lab.numpy(), 3) for lab in labels]))
    one, two = BoundaryMetrics(3), BoundaryMetrics(3)
    one.update(preds, labels)
    for pred, label in zip(preds, labels):
        two.update(pred, label)
    for a, b in zip((one.biou, one.trimap, one.contours), (two.biou, two.trimap, two.contours)):
        assert torch.equal(a, b) and a.sum() > 0
    assert one.summary() == two.summary()
    assert one.reduce_() is one  # outside torch.distributed: a no-op


def test_all_stages_at_once_equal_one_stage_at_a_time():
    rng = np.random.default_rng(5)
    label = random_label(rng, 48, 40, 3)
    preds = {f"P{k}": torch.from_numpy(perturbed(rng, label, 3)) for k in range(3)}
    preds["P1"][0, 0] = 7  # out of range: clamped to the last class, as the confusion matrix does
    alone = {n: BoundaryMetrics(3) for n in preds}
    for name, pred in preds.items():
        alone[name].update(pred.clamp(0, 2), torch.from_numpy(label))
    for stacked in (True, False):
        together = {n: BoundaryMetrics(3) for n in preds}
        update_stages(together, preds, torch.from_numpy(label), stacked=stacked)
        for name in preds:
            for a, b in zip((together[name].biou, together[name].trimap, together[name].contours),
                            (alone[name].biou, alone[name].trimap, alone[name].contours)):
                assert torch.equal(a, b), (stacked, name)
    assert alone["P0"].summary() != alone["P2"].summary()  # three different stages


def test_bad_settings_and_shapes_are_one_line_errors():
    with pytest.raises(ValueError, match="trimap_widths"):
        BoundarySettings(trimap_widths=(4, 2))
    with pytest.raises(ValueError, match="dilation_ratio"):
        BoundarySettings(dilation_ratio=1.5)
    with pytest.raises(ValueError, match="eval_classes"):
        BoundaryMetrics(2, eval_classes=[3])
    with pytest.raises(ValueError, match="shape"):
        BoundaryMetrics(2).update(torch.zeros(4, 5, dtype=torch.long), torch.zeros(4, 4, dtype=torch.long))
