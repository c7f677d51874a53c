"""Figures a reader can map: training curves one panel per table with a distinct look per run, the
P0-P4 figure with a class legend."""
import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")

from pna.analysis.report import training_curves_figure  # noqa: E402
from pna.analysis.figures import plot_refinement, plot_training_curves  # noqa: E402


def _log(path: Path, slope: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"type": "train", "iter": i, "loss": 3.0 - slope * i}) for i in range(1, 6)]
    path.write_text("\n".join(lines + [json.dumps({"type": "eval", "iter": 5, "mIoU": {}})]) + "\n")
    return path


def _look(line) -> tuple:
    return tuple(matplotlib.colors.to_rgb(line.get_color())), line.get_linestyle()


def test_training_curves_one_panel_per_table_and_no_two_runs_alike(tmp_path):
    logs = {f"table1/row{i}": _log(tmp_path / f"a{i}.jsonl", 0.1 + i / 100) for i in range(12)}
    logs.update({f"table3/row{i}": _log(tmp_path / f"b{i}.jsonl", 0.2) for i in range(3)})
    fig = plot_training_curves(logs)
    panels = [ax for ax in fig.axes if ax.lines]
    assert [ax.get_title() for ax in panels] == ["table1", "table3"]
    first = panels[0]
    assert [t.get_text() for t in first.get_legend().get_texts()] == [f"row{i}" for i in range(12)]
    assert len({_look(line) for line in first.lines}) == 12  # 12 runs, 12 looks (10 colours x styles)
    assert list(first.lines[0].get_ydata()) == pytest.approx([3.0 - 0.1 * i for i in range(1, 6)])


def test_training_curves_of_a_resumed_run_show_each_iteration_once(tmp_path):
    # iterations 1-4, a crash mid-line, a resume from the checkpoint at 2 that logs 3-5 again
    first = [{"type": "train", "iter": i, "loss": 10.0 + i} for i in range(1, 5)]
    second = [{"type": "train", "iter": i, "loss": float(i)} for i in range(3, 6)]
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps(e) for e in first) + '\n{"type": "train", "it' + "\n"
                   + "\n".join(json.dumps(e) for e in second) + "\n")
    line = plot_training_curves({"table1/row": log}).axes[0].lines[0]
    assert list(line.get_xdata()) == [1, 2, 3, 4, 5]
    assert list(line.get_ydata()) == [11.0, 12.0, 3.0, 4.0, 5.0]


def test_report_draws_a_run_shared_by_two_tables_in_both_panels(tmp_path, monkeypatch):
    shared, own = _log(tmp_path / "runs" / "s.jsonl", 0.1), _log(tmp_path / "runs" / "o.jsonl", 0.2)
    for table, row, log in [("table1", "fcn_pna", shared), ("table1", "fcn_pna_again", shared),
                            ("table3", "fcn_pna", shared), ("table3", "psp", own)]:
        record = {"config": {"profile": "smoke", "table": table, "row": row}, "log": str(log)}
        (tmp_path / table).mkdir(exist_ok=True)
        (tmp_path / table / f"{row}.smoke.json").write_text(json.dumps(record))
    captured = {}
    import pna.analysis.figures
    original = pna.analysis.figures.plot_training_curves

    def spy(logs):
        captured.update(logs)
        return original(logs)

    monkeypatch.setattr(pna.analysis.figures, "plot_training_curves", spy)
    path = training_curves_figure("smoke", root=tmp_path)
    assert path.is_file() and path.stat().st_size > 1000
    assert set(captured) == {"table1/fcn_pna", "table3/fcn_pna", "table3/psp"}


def test_refinement_figure_names_the_classes_it_shows():
    palette = [(0, 0, 0), (200, 0, 0), (0, 200, 0), (0, 0, 200)]
    label = torch.zeros(8, 8, dtype=torch.long)
    label[2:4, 2:4], label[0, 0] = 1, 255
    p1 = torch.where(label == 255, 0, label)
    p1[5:, 5:] = 2
    predictions = {"P0": torch.zeros(8, 8, dtype=torch.long), "P1": p1}
    sample = {"image": torch.zeros(3, 8, 8), "label": label, "predictions": predictions}
    fig = plot_refinement([sample], palette, class_names=["background", "cat", "dog", "bird"])
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert texts == ["background", "cat", "dog", "ignored"]  # bird does not occur
    colours = [tuple(np.round(h.get_facecolor()[:3], 3)) for h in fig.legends[0].legend_handles]
    assert colours[1] == pytest.approx((200 / 255, 0, 0), abs=1e-3)
    assert plot_refinement([sample], palette).legends == []  # no names, no legend


def test_band_fixes_counts_by_hand_and_the_boundary_figures_draw_every_stage(tmp_path):
    from pna.analysis.boundary_figures import band_fix_report, plot_boundary_stages
    from pna.analysis.boundary_report import boundary_frame

    # label: class 1 in columns 4-9 of a 10x10 image, one ignored pixel at (9, 0). Band of 2 px:
    # columns 2-5 (40 px) and, around the ignored pixel (another label), (7-8, 0-1) and (9, 1): 45 px
    label = torch.zeros(10, 10, dtype=torch.long)
    label[:, 4:] = 1
    label[9, 0] = 255
    p0 = torch.zeros(10, 10, dtype=torch.long)  # wrong on all 60 class-1 pixels
    p4 = label.clone()
    p4[9, 0] = 0
    p4[0, 0] = 1  # right everywhere but one pixel far from the boundary
    p4[5, 3] = 1  # and one in the band
    fig, fixes = band_fix_report(torch.zeros(3, 10, 10), label, {"P0": p0, "P4": p4}, [(0, 0, 0), (255, 0, 0)], width=2)
    assert fixes.loc["inside the band"].tolist()[:5] == [45, 20, 1, 20, 1]
    assert fixes.loc["outside the band"].tolist()[:5] == [54, 40, 1, 40, 1]  # 100 - 45 - 1 ignored
    assert fixes.loc["all", "fixed"] == 60 and fixes.loc["inside the band", "share of all fixed (%)"] == pytest.approx(100 / 3)
    assert fixes.loc["inside the band", "share of pixels (%)"] == pytest.approx(100 * 45 / 99)
    assert len(fig.axes) == 5
    stages = {s: {"mIoU": 0.5, "boundary_iou": {"mean": 0.2}, "boundary_f": {"mean": 0.3},
                  "trimap_miou": {"1": 0.1, "8": 0.3}} for s in ("P0", "P1", "P2")}
    frame = boundary_frame({"pna": {"stages": stages}, "fcn": {"stages": {"P0": stages["P0"]}}})
    fig = plot_boundary_stages(frame, title="t")
    panels = [ax for ax in fig.axes if ax.lines]
    assert [ax.get_title() for ax in panels] == ["pna", "fcn"]
    assert len(panels[0].lines) == 4 and list(panels[0].lines[-1].get_ydata()) == [20.0] * 3  # Boundary IoU last
