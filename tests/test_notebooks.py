"""The notebooks' papermill interface: parameters reach the results. (nbval runs every notebook
with its defaults; this runs one with non-default parameters.)"""
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
COMMON = {"profile", "data_root", "device", "rows", "iters", "batch_size", "seed", "out_dir", "weights",
          "allow_random_init", "workers", "gpus", "nodes", "rdzv_endpoint", "micro_batch", "executor", "partition",
          "time_min", "trust_files"}


def _parameters_cell(path: Path):
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    return cells[0]


def test_every_notebook_opens_with_a_parameters_cell_of_literals():
    assert len(NOTEBOOKS) == 9
    for path in NOTEBOOKS:
        notebook = nbformat.read(path, as_version=4)
        assert notebook.metadata["kernelspec"]["name"] == "python3", path.name
        cell = _parameters_cell(path)
        assert "parameters" in cell.metadata.get("tags", []), f"{path.name}: first code cell not tagged"
        names = set()
        for line in cell.source.splitlines():
            name, _, value = line.partition("=")
            value = value.split("#")[0].strip()
            compile(value, path.name, "eval")  # a plain literal
            eval(value, {"__builtins__": {}})
            names.add(name.strip())
        assert COMMON <= names, f"{path.name} lacks {COMMON - names}"
        assert all(not c.get("outputs") for c in notebook.cells if c.cell_type == "code"), f"{path.name} has outputs"



def test_papermill_sees_every_parameter_with_its_help():
    """``papermill --help-notebook`` and papermill's parameter inspection skip a line holding two '='
    (an '=' in its comment) with "Unable to parse line"; every name the cell assigns must be listed,
    its comment as the help text."""
    import ast

    import papermill

    for path in NOTEBOOKS:
        assigned = [t.id for node in ast.parse(_parameters_cell(path).source).body for t in node.targets]
        seen = papermill.inspect_notebook(str(path))
        assert list(seen) == assigned, f"{path.name}: papermill misses {sorted(set(assigned) - set(seen))}"
        assert all(p["help"] for p in seen.values()), f"{path.name}: a parameter without help"

def test_every_run_rows_call_passes_the_trusted_files_tensorboard_and_wait():
    """A notebook's ``trust_files``, ``tensorboard`` and ``wait`` reach every run_rows call (otherwise a trusted file is
    refused there), and notebook 08's train_inputs, which calls run_rows for the tables' rows and trains SegFix."""
    calls = 0
    for path in NOTEBOOKS:
        for cell in nbformat.read(path, as_version=4).cells:
            for function in ("run_rows(", "train_inputs("):
                for call in cell.source.split(function)[1:] if cell.cell_type == "code" else []:
                    calls += 1
                    args = call.split(")\n")[0]
                    assert "trust_files=trust_files" in args, f"{path.name}: {function} without trust_files"
                    assert "tensorboard=tensorboard" in args, f"{path.name}: {function} without tensorboard"
                    assert "wait=wait" in args, f"{path.name}: {function} without wait"
    assert calls == 9  # one per notebook 00-06, Table 2's in 01, and 08's train_inputs


def _papermill(notebook: str, tmp_path: Path, *parameters: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PNA_RUNS_DIR": str(tmp_path / "runs"), "PNA_RESULTS_DIR": str(tmp_path / "unused"),
           "HF_HUB_OFFLINE": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / notebook), str(tmp_path / notebook),
               "--cwd", str(ROOT / "notebooks"), "--no-progress-bar", *parameters]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)


def test_papermill_parameters_reach_the_results(tmp_path):
    out = tmp_path / "results"
    done = _papermill("04_deepglobe.ipynb", tmp_path, "-p", "iters", "6", "-p", "batch_size", "4", "-p", "seed", "3",
                      "-p", "device", "cpu", "-p", "out_dir", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    written = sorted(p.name for p in (out / "table5").glob("*.json"))
    assert written == ["fpn_r52.smoke.json", "fpn_r52_pna.smoke.json"]
    assert not (tmp_path / "unused").exists()  # out_dir, not the environment's default, got them
    for name in written:
        record = json.loads((out / "table5" / name).read_text())
        assert record["iterations"] == 6
        assert record["config"]["train"]["batch_size"] == 4 and record["config"]["train"]["seed"] == 3
        assert record["config"]["train"]["device"] == "cpu"


@pytest.mark.parametrize("rows, expected", [
    ("fpn_r52_pna", ["fpn_r52_pna"]),                                   # -p rows NAME: a plain string
    ("['fpn_r52_pointrend', 'fpn_r52_pna']", ["fpn_r52_pna", "fpn_r52_pointrend"]),  # the text of a list
])
def test_a_notebook_runs_any_subset_of_its_rows(tmp_path, rows, expected):
    out = tmp_path / "results"
    done = _papermill("04_deepglobe.ipynb", tmp_path, "-p", "rows", rows, "-p", "iters", "2", "-p", "batch_size", "2",
                      "-p", "out_dir", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert sorted(p.name.split(".")[0] for p in (out / "table5").glob("*.json")) == expected
    executed = (tmp_path / "04_deepglobe.ipynb").read_text()
    assert "not trained in this run" in executed  # the comparisons it could not make are listed


def test_an_unknown_row_is_a_one_line_error_listing_the_table(tmp_path):
    done = _papermill("04_deepglobe.ipynb", tmp_path, "-p", "rows", "fpn_r50_pna")
    assert done.returncode != 0
    assert "table5 has no row(s) ['fpn_r50_pna']; its rows are ['fpn_r52', 'fpn_r52_pointrend', 'fpn_r52_pna']" in (
        done.stdout + done.stderr)


@pytest.mark.slow
def test_a_paper_notebook_trains_its_row_on_two_gloo_processes_through_gpus(tmp_path):
    """The paper profile through notebook 01's `gpus` parameter: device='cpu', gpus=2 runs the row on 2 gloo
    processes (torchrun), on VOC-format fixture files at the official sizes, 2 iterations of batch 2."""
    from pna.data.fixtures import write_fixture

    root = write_fixture("voc", tmp_path / "data", num_train=2, num_eval=1)
    out = tmp_path / "results"
    done = _papermill("01_voc_ablation.ipynb", tmp_path, "-p", "profile", "paper", "-p", "data_root", str(root),
                      "-p", "device", "cpu", "-p", "gpus", "2", "-p", "rows", "fcn_r50_os32", "-p", "iters", "2",
                      "-p", "batch_size", "2", "-p", "workers", "0", "-p", "allow_random_init", "True",
                      "-p", "window_rows", "[]", "-p", "out_dir", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads((out / "table1" / "fcn_r50_os32.paper.json").read_text())
    assert record["world_size"] == 2 and record["iterations"] == 2
    split = record["batch_split"]
    assert (split["processes"], split["micro_batch"], split["accumulation"], split["bn_images"]) == (2, 1, 1, 2)
    assert split["differences"] == ["BatchNorm statistics over 2 images per forward pass (authors: 16, SyncBN "
                                    "over 4 GPUs x 4)"]
    executed = (tmp_path / "01_voc_ablation.ipynb").read_text()
    assert "through torchrun" in executed and "fcn_r50_os32: 2/2" in executed  # rank 0's progress, streamed
