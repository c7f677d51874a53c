"""The refiners table from hand-made records: what the Markdown shows, the paper's numbers beside
ours, the claims and their smoke exceptions, and that a record made from other runs is kept."""
import json

import pytest

from pna.analysis import refiners_report as report
from pna.analysis.claims import enforce_claims
from pna.analysis.refiners_eval import METHODS


def _record(head: str, miou: dict, hashes: str = "a") -> dict:
    methods = {m: {"mIoU": miou[m], "boundary_iou": 0.25, "boundary_f": 0.5, "trimap_miou": {"1": 0.1, "4": 0.125},
                   "per_class_iou": {}, "params_m": 12.5, "gflops": 3.25, "fps": 8.0, "seconds_per_image": 0.125}
               for m in METHODS}
    rows = {role: {"config": f"x/{role}", "config_hash": hashes * 64, "backbone": "resnet10c_half"}
            for role in ("coarse", "pointrend", "pna", "segfix")}
    return {"head": head, "title": head.upper(), "note": "", "profile": "smoke", "rows": rows, "methods": methods,
            "num_images": 2, "image_size": [8, 8], "split": "val", "device": "cpu", "cpu_threads": 2,
            "crf": {"iterations": 10}, "segfix": {"offset_scale": 2}}


ORDERED = dict(zip(METHODS, (0.50, 0.49, 0.55, 0.53, 0.70, 0.71)))  # P0, +CRF, +SegFix, PointRend, P4, P4+SegFix


def test_the_table_shows_every_method_of_every_head_in_percent_beside_the_papers(tmp_path):
    report.write_record(_record("cityscapes_deeplabv3", ORDERED), tmp_path)
    report.write_record(_record("voc_fcn_os32", ORDERED), tmp_path)
    frame, path = report.write_refiners_table("smoke", tmp_path)
    assert path == tmp_path / "tables" / "refiners.smoke.md" and len(frame) == 2 * len(METHODS)
    text = path.read_text()
    # Table 4 (ResNet-101): DeepLabV3 77.8, + SegFix 80.5, + PNA 81.3; Table 1: FCN-OS-32 + PNA P4 78.6
    assert "| CITYSCAPES_DEEPLABV3 | P0 + SegFix | 80.5 | 55.0 | 25.0 | 12.5 | 50.0 | 12.5 | 3.2 | 8.0 |" in text
    assert "| CITYSCAPES_DEEPLABV3 | P0 + DenseCRF |  | 49.0 |" in text  # the paper has no CRF number
    assert "| VOC_FCN_OS32 | PNA P4 | 78.6 | 70.0 |" in text
    assert "holds: CITYSCAPES_DEEPLABV3: PNA P4 beats P0 + SegFix (mIoU) - PNA P4 70.0 vs P0 + SegFix 55.0" in text


def test_a_record_of_other_runs_is_kept_unless_overwritten(tmp_path):
    path = report.write_record(_record("voc_fcn_os32", ORDERED, "a"), tmp_path)
    report.write_record(_record("voc_fcn_os32", ORDERED, "a"), tmp_path)  # the same runs: replaced
    with pytest.raises(FileExistsError, match="scores other runs"):
        report.write_record(_record("voc_fcn_os32", ORDERED, "b"), tmp_path)
    report.write_record(_record("voc_fcn_os32", ORDERED, "b"), tmp_path, overwrite=True)
    assert json.loads(path.read_text())["rows"]["pna"]["config_hash"] == "b" * 64


def test_claims_are_asserted_unless_a_smoke_exception_says_why(monkeypatch):
    swapped = {**ORDERED, "P0 + SegFix": 0.52, "PointRend": 0.54}  # SegFix below PointRend
    # a head of no smoke exception: every failed claim is asserted
    claims = report.check_refiner_claims({"a_head": _record("a_head", swapped)})
    assert claims["holds"].tolist() == [True, False, True, True, False, True]
    with pytest.raises(AssertionError, match="P0 \\+ SegFix beats PointRend"):
        enforce_claims(claims, "smoke", None)
    enforce_claims(claims, "paper", None)  # the paper profile reports, never asserts
    monkeypatch.setitem(report.SMOKE_EXCEPTIONS, ("a_head", "P0 + SegFix", "PointRend"), "a reason")
    monkeypatch.setitem(report.SMOKE_EXCEPTIONS, ("a_head", "P0 + DenseCRF", "P0"), "another")
    claims = report.check_refiner_claims({"a_head": _record("a_head", swapped)})
    assert claims["note"].tolist()[1] == "does not hold here: a reason" and not claims["must_hold_in_smoke"][1]
    enforce_claims(claims, "smoke", None)  # the two that fail are stated, not asserted
