"""The paper-profile rehearsal: official-format fixtures, and one row per dataset end to end
(`make rehearse` runs every row; `results/rehearsal/cpu.csv` is its committed table)."""
import csv
import subprocess
import sys

import pytest
import torch

from pna.configs import ROWS, apply_overrides, load_config
from pna.data import build_dataset, info
from pna.data.fixtures import OFFICIAL_SIZES, write_fixture
from pna.tools.rehearse import CI_ROWS, COLUMNS
from pna.paths import REPO_ROOT


@pytest.mark.parametrize("dataset", sorted(OFFICIAL_SIZES))
def test_fixtures_are_read_by_the_paper_configs(dataset, tmp_path):
    root = write_fixture(dataset, tmp_path, num_train=2, num_eval=1, size=(40, 56))
    cfg = apply_overrides(load_config(CI_ROWS[dataset], "paper"), {"data.root": str(root)})
    train = build_dataset(cfg.data.dataset, root, cfg.data.train_split, **cfg.data.options)
    test = build_dataset(cfg.data.eval_dataset or cfg.data.dataset, root, cfg.data.eval_split,
                         **{**cfg.data.options, **cfg.data.eval_options})
    assert (len(train), len(test)) == (2, 1)
    labels = torch.cat([train[i]["label"].flatten() for i in range(2)])
    assert tuple(train[0]["label"].shape) == (40, 56)
    assert len(set(labels.unique().tolist()) - {255}) >= 2  # several classes, so crops can be balanced
    assert set(labels.unique().tolist()) <= set(range(info(cfg.data.dataset).num_classes)) | {255}


def test_every_ci_row_is_a_paper_config_and_covers_every_dataset():
    assert set(CI_ROWS) == {row.dataset for row in ROWS.values()}
    assert all(name in ROWS and ROWS[name].dataset == dataset for dataset, name in CI_ROWS.items())


@pytest.mark.slow
def test_rehearsal_of_one_row_per_dataset_passes(tmp_path):
    # Real models at the paper's crops and test sizes, 2 iterations with a resume, a bf16 step each.
    out = tmp_path / "cpu.csv"
    done = subprocess.run([sys.executable, "-m", "pna", "rehearse", "--rows", "ci", "--out", str(out)],
                          capture_output=True, text=True, timeout=2400, cwd=REPO_ROOT)
    lines = list(csv.DictReader(out.open()))
    assert list(lines[0]) == COLUMNS
    failed = {x["config"]: x["error"] for x in lines if x["status"] != "ok"}
    assert done.returncode == 0 and not failed, (failed, done.stdout[-2000:])
    assert [x["config"] for x in lines] == list(CI_ROWS.values())
    assert all(x["resumed_at"] == "1" and float(x["eval_s"]) > 0 and float(x["amp_step_s"]) > 0 for x in lines)


@pytest.mark.slow
def test_the_voc_notebook_runs_one_row_of_the_paper_profile_through_papermill():
    # As a GPU user launches it (`-p profile paper`), at the real crop and test size: the notebook
    # with the most cells after training (per-class table, costs, and the window ablation given no
    # rows, which once ended the run with a KeyError after the row had trained).
    from pna.tools.rehearse import papermill_row

    line = papermill_row("voc", "cpu", timeout=1500)
    assert line["status"] == "ok", line["error"]


def test_an_update_keeps_the_rows_of_an_earlier_partial_run_in_config_order(tmp_path):
    from pna.tools.rehearse import write_table

    path = tmp_path / "cpu.csv"
    write_table([{"config": "voc/psp_r101_os16", "status": "ok", "error": ""},
                 {"config": "papermill 01_voc_ablation.ipynb (fcn_r50_os32_pna)", "status": "ok", "error": ""}], path)
    write_table([{"config": "voc/fcn_r50_os32", "status": "ok", "error": ""}], path, update=True)
    write_table([{"config": "voc/psp_r101_os16", "status": "failed", "error": "boom"}], path, update=True)
    lines = list(csv.DictReader(path.open()))
    assert [(x["config"], x["status"]) for x in lines] == [
        ("voc/fcn_r50_os32", "ok"), ("voc/psp_r101_os16", "failed"),
        ("papermill 01_voc_ablation.ipynb (fcn_r50_os32_pna)", "ok")]
    write_table([{"config": "voc/fcn_r50_os32", "status": "ok", "error": ""}], path)  # no update: replaced
    assert [x["config"] for x in csv.DictReader(path.open())] == ["voc/fcn_r50_os32"]
