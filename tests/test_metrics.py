"""Confusion-matrix mIoU against hand-computed values; the optimiser groups and the lr schedule."""
import math

import pytest
import torch

from pna.engine.metrics import ConfusionMatrix
from pna.engine.optim import build_optimizer, build_scheduler, no_decay_names, poly_factor


def test_confusion_matrix_matches_hand_computation():
    label = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 1]])
    pred = torch.tensor([[0, 1, 1, 1], [2, 0, 2, 2]])
    cm = ConfusionMatrix(num_classes=3)
    cm.update(pred, label)
    # rows = label, columns = prediction; the 255 pixel is not counted
    expected = torch.tensor([[1, 1, 0],
                             [0, 2, 1],
                             [1, 0, 1]])
    assert torch.equal(cm.matrix, expected)
    # IoU_c = tp / (row + col - tp): class0 1/(2+2-1), class1 2/(3+3-2), class2 1/(2+2-1)
    iou = cm.iou()
    assert torch.allclose(iou, torch.tensor([1 / 3, 2 / 4, 1 / 3], dtype=torch.float64))
    assert cm.miou() == pytest.approx((1 / 3 + 1 / 2 + 1 / 3) / 3)
    assert cm.pixel_accuracy() == pytest.approx(4 / 7)


def test_eval_class_subset_and_absent_classes():
    # Trans10k-like: 3 classes, mIoU over classes 1 and 2 only; background errors still count
    label = torch.tensor([0, 0, 1, 1, 2])
    pred = torch.tensor([0, 1, 1, 1, 0])
    cm = ConfusionMatrix(3, eval_classes=[1, 2])
    cm.update(pred, label)
    # class 1: tp 2, fp 1 (a background pixel), fn 0 -> 2/3; class 2: tp 0, fn 1 -> 0
    assert cm.miou() == pytest.approx((2 / 3 + 0) / 2)
    summary = cm.summary(["bg", "things", "stuff"])
    assert set(summary["per_class_iou"]) == {"things", "stuff"}
    # a class absent from labels and predictions has no IoU and is left out of the mean
    cm = ConfusionMatrix(4)
    cm.update(torch.tensor([0, 1]), torch.tensor([0, 1]))
    assert math.isnan(cm.iou()[3]) and cm.miou() == 1.0
    assert cm.summary()["per_class_iou"]["3"] is None


def test_accumulates_over_batches_and_rejects_bad_input():
    cm = ConfusionMatrix(2)
    cm.update(torch.tensor([[0, 1]]), torch.tensor([[0, 1]]))
    cm.update(torch.tensor([[1, 1]]), torch.tensor([[0, 1]]))
    assert cm.matrix.tolist() == [[1, 1], [0, 2]]
    with pytest.raises(ValueError, match="shape"):
        cm.update(torch.zeros(2, 2), torch.zeros(2, 3))
    with pytest.raises(ValueError, match="eval_classes"):
        ConfusionMatrix(2, eval_classes=[2])


def test_no_weight_decay_on_norms_biases_and_bias_tables():
    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 1)
            self.norm = torch.nn.LayerNorm(4)
            self.rpb_table = torch.nn.Parameter(torch.zeros(2, 5, 5))
    names = no_decay_names(Block())
    assert names == {"conv.bias", "norm.weight", "norm.bias", "rpb_table"}
    opt = build_optimizer(Block(), lr=1e-3, weight_decay=0.05)
    assert [len(g["params"]) for g in opt.param_groups] == [1, 4]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.0]


def test_poly_schedule_with_linear_warmup():
    assert poly_factor(0, 100) == 1.0
    assert poly_factor(50, 100, power=1.0) == pytest.approx(0.5)
    assert poly_factor(100, 100) == 0.0
    # warmup starts at warmup_ratio and meets the poly curve at its end
    assert poly_factor(0, 100, warmup_iters=10, warmup_ratio=0.1) == pytest.approx(0.1)
    assert poly_factor(10, 100, warmup_iters=10, warmup_ratio=0.1) == pytest.approx(0.9 ** 0.9)
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([param], lr=1e-2)
    sched = build_scheduler(opt, total_iters=10, power=1.0)
    lrs = []
    for _ in range(10):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(1e-2) and lrs[5] == pytest.approx(5e-3) and lrs[-1] == pytest.approx(1e-3)
