"""pna.analysis.thin: the per-stride oracle, the per-class tables and the thin-pixel picker."""
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from pna.analysis.thin import (
    find_thin_pixel, oracle_miou, oracle_prediction, oracle_table, per_class_table, plot_thin_classes,
    thin_pixel, window_share, window_share_table,
)


def stripes(width: int, size: int = 64) -> torch.Tensor:
    label = torch.zeros(1, size, size, dtype=torch.long)
    for top in range(4, size - width, 16):
        label[:, top:top + width, 4:size - 4] = 1
    return label


def test_stride_one_and_whole_cells_are_exact():
    label = torch.randint(0, 3, (2, 32, 32))
    assert torch.equal(oracle_prediction(label, 1, 3), label)
    halves = torch.zeros(1, 32, 32, dtype=torch.long)
    halves[..., 16:] = 1  # a straight boundary on the cell grid: the bilinear ramp crosses it there
    for mode in ("majority", "soft"):
        assert oracle_miou(halves, 8, 2, mode=mode)["mIoU"] == 1.0
    # where three or four cell labels meet, the bilinear blend loses corners, as predictions do
    blocks = torch.randint(0, 3, (2, 4, 4), generator=torch.Generator().manual_seed(0))
    blocks = blocks.repeat_interleave(8, 1).repeat_interleave(8, 2)
    assert 0.8 < oracle_miou(blocks, 8, 3)["mIoU"] < 1.0


def test_thin_parts_fade_as_the_stride_grows():
    label = stripes(width=6)
    ious = [oracle_miou(label, s, 2)["per_class_iou"][1] for s in (2, 4, 8, 16)]
    assert ious == sorted(ious, reverse=True) and ious[0] > 0.8 and ious[-1] == 0.0


def test_ignored_pixels_neither_vote_nor_count():
    label = torch.full((1, 16, 16), 255)
    label[:, :, :8] = 1  # the right half is ignored: the left half is all that is scored
    pred = oracle_prediction(label, 16, 2)  # a single cell: its only voter is class 1
    assert (pred == 1).all()
    assert oracle_miou(label, 16, 2)["per_class_iou"] == {0: None, 1: 1.0}


def test_oracle_table_has_a_line_per_stride_and_a_column_per_class():
    table = oracle_table(stripes(6), ["background", "stripe"], strides=(16, 4))
    assert list(table.index) == [16, 4] and list(table.columns) == ["mIoU", "background", "stripe"]
    assert table.loc[4, "stripe"] > table.loc[16, "stripe"]


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="mode must be one of"):
        oracle_prediction(stripes(6), 4, 2, mode="nearest")
    with pytest.raises(ValueError, match="labels must be"):
        oracle_prediction(torch.zeros(8, 8), 4, 2)
    with pytest.raises(ValueError, match="stride must be"):
        oracle_prediction(stripes(6), 0, 2)


def fake_run(ious_by_stage: dict) -> SimpleNamespace:
    stages = {s: {"mIoU": float(np.mean([x for x in v.values() if x is not None])), "per_class_iou": v}
              for s, v in ious_by_stage.items()}
    return SimpleNamespace(metrics={"stages": stages, "final_stage": list(stages)[-1]})


def test_tables_of_runs():
    run = fake_run({"P0": {"background": 0.9, "stripe": 0.0, "ring": 0.1, "speck": None},
                    "P1": {"background": 0.95, "stripe": 0.5, "ring": 0.6, "speck": 0.4}})
    stages = per_class_table(run.metrics)
    assert list(stages.index) == ["P0", "P1"] and stages.loc["P1", "stripe"] == 50.0
    assert np.isnan(stages.loc["P0", "speck"])
    assert stages.loc["P1", "ring"] == 60.0 and stages.loc["P1", "mIoU"] == 100 * run.metrics["stages"]["P1"]["mIoU"]


def test_find_thin_pixel_walks_the_samples_and_names_missing_classes():
    empty, striped = np.zeros((64, 64), np.uint8), stripes(6)[0].numpy().astype(np.uint8) * 2

    class Labels:
        classes = ["background", "disc", "stripe"]

        def __len__(self):
            return 2

        def load(self, index):
            return None, [empty, striped][index]

    dataset = Labels()
    index, (row, col) = find_thin_pixel(dataset, "stripe")
    assert index == 1 and striped[row, col] == 2
    assert thin_pixel(empty, 2) is None
    with pytest.raises(ValueError, match="not one of the dataset's classes"):
        find_thin_pixel(dataset, "ring")
    with pytest.raises(ValueError, match="no 'stripe' pixel"):
        find_thin_pixel(dataset, "stripe", limit=1)


def test_thin_class_figure_has_a_panel_per_thin_class():
    import matplotlib
    matplotlib.use("Agg")
    ious = {"background": 0.9, "stripe": 0.2, "ring": 0.3, "speck": 0.1}
    run = fake_run({f"P{m}": {k: min(1.0, v + 0.1 * m) for k, v in ious.items()} for m in range(5)})
    oracle = oracle_table(stripes(6), ["background", "stripe"], strides=(32, 16, 8, 4))
    for cls in ("ring", "speck"):
        oracle[cls] = oracle["stripe"]
    fig = plot_thin_classes(run, oracle, baselines={"base": fake_run({"P0": ious})})
    assert [ax.get_title() for ax in fig.axes] == ["stripe", "ring", "speck"]
    assert len(fig.axes[0].lines) == 3  # model, oracle, baseline


def test_window_share_rewards_weights_on_the_class():
    label = torch.zeros(32, 32, dtype=torch.long)
    label[:, 12:16] = 2  # one column of stride-4 cells
    attn = torch.zeros(2, 8, 8, 9)
    attn[:, :, :, [1, 4, 7]] = 1 / 3  # every query looks at the middle column of its 3x3 window
    weighted, uniform = window_share(attn, label, (16, 13), 3, class_id=2)
    assert weighted == pytest.approx(1.0) and uniform == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="window slots"):
        window_share(attn, label, (16, 13), 5, class_id=2)


def test_window_share_table_covers_every_refinement_stage():
    import warnings
    from pna.models import create_model
    warnings.simplefilter("ignore")  # randomly initialised backbone
    model = create_model("fcn_r50_os32_pna", 3, backbone="resnet10c_half", embed_dims=(32, 32, 32, 32),
                         head_channels=16, aux_channels=16, window_size=3).eval()
    label = torch.zeros(64, 64, dtype=torch.long)
    label[:, 28:36] = 2
    table = window_share_table(model, torch.randn(3, 64, 64), label, (32, 30), class_id=2)
    assert list(table.index) == ["P1", "P2", "P3", "P4"] and list(table["stride"]) == [32, 16, 8, 4]
    assert ((table["weighted"] >= 0) & (table["weighted"] <= 1)).all() and (table["uniform"] > 0).all()
