"""Per-class tables from the results JSONs, and the walkthrough's query pixel."""
import json

import numpy as np
import pytest

from pna.analysis.thin import walkthrough_query
from pna.analysis.thin_report import rows_per_class_table


def _record(row: str, final: str, ious: dict) -> dict:
    stage = {"mIoU": sum(ious.values()) / len(ious), "per_class_iou": ious}
    return {"config": {"row": row, "profile": "smoke"}, "metrics": {"final_stage": final, "stages": {final: stage}}}


def test_rows_per_class_table_reads_each_rows_final_stage_and_marks_thin_classes(tmp_path):
    (tmp_path / "table1").mkdir()
    records = {"fcn_r50_os32": _record("fcn_r50_os32", "P0", {"background": 0.9, "stripe": 0.1}),
               "fcn_r50_os32_pna": _record("fcn_r50_os32_pna", "P4", {"background": 0.95, "stripe": 0.7})}
    for row, record in records.items():
        (tmp_path / "table1" / f"{row}.smoke.json").write_text(json.dumps(record))
    frame = rows_per_class_table("table1", "smoke", tmp_path)
    assert frame.loc["fcn_r50_os32_pna", "stripe"] == pytest.approx(70.0)
    assert frame.loc["fcn_r50_os32", "stage"] == "P0"
    text = (tmp_path / "tables" / "table1_per_class.smoke.md").read_text()
    assert "| *stripe* |" in text and "| fcn_r50_os32_pna | P4 | 82.5 | 95.0 | 70.0 |" in text
    with pytest.raises(FileNotFoundError, match="paper"):
        rows_per_class_table("table1", "paper", tmp_path)


class _Labels:
    classes = ["background", "disc", "stripe"]

    def __init__(self, labels):
        self.labels = labels

    def __len__(self):
        return len(self.labels)

    def load(self, index):
        return None, self.labels[index]


def test_walkthrough_query_finds_a_stripe_pixel_from_the_label_or_keeps_the_users():
    empty = np.zeros((64, 64), np.uint8)
    striped = empty.copy()
    striped[20:26, 10:54] = 2
    data = _Labels([empty, striped])
    index, (row, col), cls = walkthrough_query(data)
    assert (index, cls, int(striped[row, col])) == (1, "stripe", 2)
    assert walkthrough_query(data, 0, (5, 6)) == (0, (5, 6), None)
    assert walkthrough_query(data, 0, "[5, 6]") == walkthrough_query(data, 0, "5,6") == (0, (5, 6), None)
    with pytest.raises(ValueError, match="pixel must be"):
        walkthrough_query(data, 0, "middle")
    data.classes = ["background", "road"]  # no stripe class: the image centre
    assert walkthrough_query(data, 1) == (1, (32, 32), None)
