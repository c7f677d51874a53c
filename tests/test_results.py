"""Results JSONs: provenance fields, atomic writes that keep other configs' results, paper numbers."""
import json

import numpy as np
import pandas as pd
import pytest

from pna.configs import apply_overrides, config_hash, load_config
from pna.analysis.paper_numbers import load_paper_numbers, load_results, ours_beside_paper
from pna.engine.records import provenance, result_path, write_result

PROVENANCE = {"config", "config_hash", "config_name", "profile", "seed", "git_commit", "git_dirty", "torch",
              "device", "device_name", "world_size", "effective_batch", "dataset_sizes", "iterations",
              "wall_time_s"}


def _record(cfg, stages: dict[str, float], split: str = "val") -> dict:
    metrics = {"split": split, "final_stage": list(stages)[-1], "mIoU": list(stages.values())[-1],
               "stages": {k: {"mIoU": v, "pixel_accuracy": 0.9, "per_class_iou": {"a": v}} for k, v in stages.items()}}
    return {**provenance(cfg, config_hash(cfg), "cpu", 1, {"train": 8, "eval": 2}, 5, 1.5), "metrics": metrics}


def test_provenance_fields_are_present(tmp_path):
    cfg = load_config("voc/fcn_r50_os32_pna", "smoke")
    record = _record(cfg, {"P0": 0.5, "P4": 0.6})
    assert PROVENANCE <= set(record)
    assert record["config_hash"] == config_hash(cfg) and record["effective_batch"] == cfg.train.batch_size
    assert record["git_commit"] is None or len(record["git_commit"]) == 40
    path = write_result(record, tmp_path)
    assert path == tmp_path / "table1" / "fcn_r50_os32_pna.smoke.json" == result_path("table1", "fcn_r50_os32_pna", "smoke", tmp_path)
    saved = json.loads(path.read_text())
    assert PROVENANCE <= set(saved) and saved["metrics"]["stages"]["P4"]["mIoU"] == 0.6
    assert not list(path.parent.glob(".*tmp"))  # the temporary file was renamed away


def test_a_result_of_another_config_is_not_overwritten(tmp_path):
    cfg = load_config("voc/fcn_r50_os32", "smoke")
    write_result(_record(cfg, {"P0": 0.5}), tmp_path)
    write_result(_record(cfg, {"P0": 0.55}), tmp_path)  # the same config again: replaced
    other = apply_overrides(cfg, ["optim.lr=0.5"])
    with pytest.raises(FileExistsError, match="overwrite"):
        write_result(_record(other, {"P0": 0.1}), tmp_path)
    assert load_results(root=tmp_path)["mIoU"].tolist() == pytest.approx([55.0])
    write_result(_record(other, {"P0": 0.1}), tmp_path, overwrite=True)
    assert load_results(root=tmp_path)["mIoU"].tolist() == pytest.approx([10.0])


def test_paper_numbers_transcribe_tables_1_to_7():
    paper = load_paper_numbers()
    assert set(paper.columns) >= {"table", "method", "backbone", "dataset", "split", "column", "value", "row"}
    counts = paper.groupby("table").size().to_dict()
    assert counts == {"table1": 30, "table2": 4, "table3": 23, "table4": 15, "table5": 6, "table6": 9, "table7": 4}

    def value(table, method, column="mIoU", split=None):
        rows = paper[(paper.table == table) & (paper.method == method) & (paper.column == column)]
        rows = rows if split is None else rows[rows.split == split]
        assert len(rows) == 1, (table, method, column, split)
        return float(rows.value.iloc[0])

    assert [value("table1", "FCN-OS-32 + Ours (NAM + SAM)", f"P{k}") for k in range(5)] == [68.4, 73.0, 77.2, 78.2, 78.6]
    assert value("table1", "FCN-OS-8", "GFLOPs") == 197.7 and value("table1", "FCN-OS-32 + Ours (NAM)", "FPS") == 34.5
    assert value("table2", "FCN-OS-32 + Ours (NAM), window 11") == 76.9
    assert value("table4", "FaPN + PointRend") == 80.1
    assert value("table6", "FPN + PNA (ours)", split="val") == 90.7
    assert value("table6", "FPN + PNA (ours)", split="test") == 91.0
    assert value("table7", "DeeplabV3 + PNA (ours)") == 37.0
    # every row we map onto is a config we can train
    from pna.configs import list_configs
    names = {n.split("/", 1)[1] for n in list_configs()}
    assert set(paper.row.dropna()) <= names


def test_ours_beside_paper_pairs_stages_and_refuses_mixed_profiles(tmp_path):
    smoke = load_config("voc/fcn_r50_os32_pna", "smoke")
    write_result(_record(smoke, {"P0": 0.5, "P1": 0.55, "P2": 0.6, "P3": 0.62, "P4": 0.65}), tmp_path)
    trans = load_config("trans10k/fpn_r52_pna", "smoke")
    write_result(_record(trans, {"P0": 0.7, "P4": 0.8}, split="test"), tmp_path)
    table = ours_beside_paper(load_results(root=tmp_path))
    t1 = table[table.table == "table1"].set_index("column")
    assert t1.loc["P4", "paper"] == 78.6 and t1.loc["P4", "ours"] == pytest.approx(65.0)
    # a smoke result says what it trained and shows no difference to the paper's number
    assert pd.isna(t1.loc["P0", "diff"]) and t1.loc["P0", "trained_backbone"] == "resnet10c_half"
    assert t1.loc["P0", "trained_on"] == "synthetic"
    t6 = table[table.table == "table6"]
    assert t6.split.tolist() == ["test"] and t6.paper.tolist() == [91.0]  # not paired with the val number
    paper_cfg = load_config("voc/fcn_r50_os32", "paper")
    write_result(_record(paper_cfg, {"P0": 0.6}), tmp_path)
    mixed = load_results(root=tmp_path)
    assert set(mixed.profile) == {"smoke", "paper"}
    with pytest.raises(ValueError, match="several profiles"):
        ours_beside_paper(mixed)
    only_paper = ours_beside_paper(load_results(profile="paper", root=tmp_path))
    assert only_paper[["row", "column", "paper"]].values.tolist() == [["fcn_r50_os32", "P0", 67.1]]
    assert only_paper["diff"].tolist() == [pytest.approx(60.0 - 67.1)]
    assert only_paper["trained_backbone"].tolist() == ["resnet50c"] and only_paper["trained_on"].tolist() == ["voc_aug"]
    assert isinstance(only_paper, pd.DataFrame)


def test_a_single_p0_value_pairs_with_our_final_stage():
    import pandas as pd

    from pna.analysis.paper_numbers import ours_beside_paper

    paper = pd.DataFrame([
        # PointRend: one number, printed in the P0 column; PNA: every stage.
        dict(table="table1", method="FPN + PointRend", backbone="ResNet50", dataset="voc", split="val",
             column="P0", value=71.2, unit="%", row="fpn_r50_pointrend", note=None),
        dict(table="table1", method="PNA", backbone="ResNet50", dataset="voc", split="val",
             column="P0", value=68.4, unit="%", row="pna", note=None),
        dict(table="table1", method="PNA", backbone="ResNet50", dataset="voc", split="val",
             column="P4", value=78.6, unit="%", row="pna", note=None),
    ])
    ours = pd.DataFrame([
        dict(table="table1", row="fpn_r50_pointrend", profile="smoke", split="val", stage="P0", is_final=False, mIoU=40.0, iterations=10),
        dict(table="table1", row="fpn_r50_pointrend", profile="smoke", split="val", stage="P1", is_final=True, mIoU=45.0, iterations=10),
        dict(table="table1", row="pna", profile="smoke", split="val", stage="P0", is_final=False, mIoU=20.0, iterations=10),
        dict(table="table1", row="pna", profile="smoke", split="val", stage="P4", is_final=True, mIoU=50.0, iterations=10),
    ]).assign(trained_backbone="resnet10c_half", trained_on="synthetic")
    beside = ours_beside_paper(ours, paper).set_index(["row", "column"])["ours"]
    assert beside[("fpn_r50_pointrend", "P0")] == 45.0   # the refined (final) prediction
    assert beside[("pna", "P0")] == 20.0 and beside[("pna", "P4")] == 50.0


def test_smoke_tables_say_what_was_trained_and_which_runs_two_tables_share(tmp_path):
    """Tables 5 and 6 of the smoke profile show one training (same config hash) for FPN + PNA: the
    written tables say so, name the backbone and data used, and show no difference to the paper."""
    from pna.analysis.report import write_tables

    for name in ("deepglobe/fpn_r52_pna", "trans10k/fpn_r52_pna"):
        cfg = load_config(name, "smoke")
        write_result(_record(cfg, {"P0": 0.7, "P4": 0.8}, split="test"), tmp_path)
    tables = write_tables("smoke", tmp_path)
    t5 = tables["table5"].set_index("method")
    assert t5.loc["FPN + PNA (ours)", "ours"] == pytest.approx(80.0)
    assert t5.loc["FPN + PNA (ours)", "ours: trained as"].startswith("resnet10c_half on synthetic")
    assert pd.isna(t5.loc["FPN + PNA (ours)", "diff"])
    text = (tmp_path / "tables" / "table5.smoke.md").read_text()
    assert "`fpn_r52_pna` is the same training as table6/fpn_r52_pna" in text
    assert "is the same training as table5/fpn_r52_pna" in (tmp_path / "tables" / "table6.smoke.md").read_text()


def _boundary(stage_values: dict[str, tuple[float, float]]) -> dict:
    """Per-stage metrics with boundary keys: {stage: (mIoU, Boundary IoU)}."""
    return {s: {"mIoU": m, "pixel_accuracy": 0.9, "per_class_iou": {"a": m},
                "boundary_iou": {"mean": b, "per_class": {"a": b}}, "boundary_f": {"mean": b / 2, "per_class": {"a": b / 2}},
                "trimap_miou": {"1": b / 4, "32": m}} for s, (m, b) in stage_values.items()}


def test_boundary_beside_paper_pairs_mIoU_and_marks_what_the_paper_does_not_report(tmp_path):
    from pna.analysis.boundary_report import NOT_REPORTED, OURS_ONLY, boundary_beside_paper, write_boundary_tables

    pna = load_config("voc/fcn_r50_os32_pna", "smoke")
    record = _record(pna, {f"P{k}": 0.5 + k / 20 for k in range(5)})
    record["metrics"]["stages"] = _boundary({f"P{k}": (0.5 + k / 20, 0.2 + k / 10) for k in range(5)})
    write_result(record, tmp_path)
    write_result(_record(load_config("voc/fcn_r50_os32", "smoke"), {"P0": 0.4}), tmp_path)  # no boundary metrics
    table1 = boundary_beside_paper("table1", "smoke", tmp_path)
    pna_p4 = table1.loc[("fcn_r50_os32_pna", "P4")]
    assert pna_p4["mIoU (paper)"] == 78.6 and pna_p4["mIoU (ours)"] == pytest.approx(70.0)
    assert np.isnan(pna_p4["diff"]) and pna_p4[f"Boundary IoU {OURS_ONLY}"] == pytest.approx(60.0)  # smoke: no diff
    assert table1.loc[("fcn_r50_os32_pna", "P0"), "mIoU (paper)"] == 68.4
    baseline = table1.loc[("fcn_r50_os32", "P0")]
    assert baseline["mIoU (paper)"] == 67.1 and np.isnan(baseline[f"Boundary IoU {OURS_ONLY}"])  # evaluated before
    # Table 3 prints one mIoU per model: it pairs with our final stage; the others are not reported
    row = load_config("voc/deeplabv3_r101_os16_pna", "smoke")
    record = _record(row, {f"P{k}": 0.6 for k in range(5)})
    record["metrics"]["stages"] = _boundary({f"P{k}": (0.6, 0.3) for k in range(5)})
    write_result(record, tmp_path)
    table3 = boundary_beside_paper("table3", "smoke", tmp_path)
    assert table3["mIoU (paper)"].tolist() == [NOT_REPORTED] * 4 + [79.3]
    written = write_boundary_tables("smoke", tmp_path)
    assert set(written) == {"table1", "table3"} and all(path.is_file() for _, path in written.values())
    text = (tmp_path / "tables" / "table3_boundary.smoke.md").read_text()
    assert NOT_REPORTED in text and f"Boundary IoU {OURS_ONLY}" in text


def test_boundary_claim_compares_the_two_gains_and_skips_a_result_without_them():
    from pna.analysis.claims import boundary_gains_more, check_claims
    from pna.engine.train import RunResult

    claim = boundary_gains_more("fcn_r50_os32_pna")
    run = lambda stages: {"fcn_r50_os32_pna": RunResult(None, None, "", {"stages": stages, "final_stage": "P4"},  # noqa: E731
                                                        {}, None, reused=False)}
    # mIoU +10 points, Boundary IoU +30 points: holds; +5 against +10: does not
    holds, measured = claim.check(run(_boundary({"P0": (0.5, 0.2), "P4": (0.6, 0.5)})))
    assert holds and "+30.0" in measured and "+10.0" in measured
    assert claim.check(run(_boundary({"P0": (0.5, 0.2), "P4": (0.6, 0.25)})))[0] is False
    old = run({"P0": {"mIoU": 0.5}, "P4": {"mIoU": 0.6}})
    line = check_claims("table1", old, synthetic=True).set_index("claim").loc[claim.text]
    assert line["holds"] is None and line["note"].startswith("skipped: no boundary metrics")
