"""Rows as cluster jobs through submitit (pna.tools.cluster), on submitit's local executor: a job that
gets submitit's preemption signal saves its trainer's state, is requeued and resumes; a finished row
is not submitted again; SLURM asked for where there is none is a one-line error."""
import json
import os
import signal
import time
from pathlib import Path

import nbformat
import psutil
import pytest
import submitit

from pna.analysis.experiments import run_rows
from pna.configs import config_hash, load_config
from pna.engine.rundir import default_run_dir
from pna.tools import cluster
from pna.tools.cluster import Finished, job_launcher, submit_notebook, submit_rows

ROOT = Path(__file__).resolve().parents[1]
ROW = "voc/fcn_r50_os32_pna"


def tiny(cache: Path, iters: int) -> list[str]:
    return [f"data.root={str(cache)!r}", "data.options={'num_train': 16, 'num_val': 4, 'size': 32, 'seed': 0}",
            "data.crop=(32, 32)", f"train.iters={iters}", "train.batch_size=4", "train.checkpoint_interval=0",
            "train.log_interval=1", "train.eval_interval=0", "train.device='cpu'", "eval.batch_size=2",
            "model.overrides.embed_dims=(32, 32, 32, 32)", "model.overrides.head_channels=16",
            "model.overrides.aux_channels=16", "model.overrides.window_size=3"]


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PNA_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("PNA_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PYTHONWARNINGS", "ignore")
    monkeypatch.chdir(ROOT)
    return tmp_path


def _log(run: Path) -> list[dict]:
    path = run / "log.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []


@pytest.mark.slow
def test_a_preempted_local_job_is_requeued_and_resumes_and_is_never_trained_twice(isolated):
    cfg = load_config(ROW, "smoke", tiny(isolated / "synthetic", 24))
    run = default_run_dir(cfg.model.name, cfg.profile, config_hash(cfg))
    pending = submit_rows([cfg], "local", gpus=1, time_min=60, folder=isolated / "jobs")[ROW]
    deadline = time.time() + 600  # a guard against a hung job, not a speed claim
    while not any(e["type"] == "train" and e["iter"] >= 3 for e in _log(run)):
        assert not pending.job.done(), f"the job ended early:\n{pending.job.stdout()}\n{pending.job.stderr()}"
        assert time.time() < deadline, "iteration 3 not logged"
        time.sleep(0.1)
    tasks = [p for p in psutil.Process(int(pending.job.job_id)).children(recursive=True)
             if "submitit.core._submit" in " ".join(p.cmdline())]
    assert len(tasks) == 1
    tasks[0].send_signal(getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG))  # submitit's preemption signal

    result = pending.result()
    assert result.finished and result.result_path.is_file() and not result.reused
    stops = [e for e in _log(run) if e["type"] == "interrupted"]
    assert len(stops) == 1 and stops[0]["iter"] >= 3 and stops[0]["signal"] == "SIGTERM"
    trained = [e["iter"] for e in _log(run) if e["type"] == "train"]
    assert trained == list(range(1, 25)), "the requeued job continued where the first stopped"
    assert "Requeued" in pending.job.stderr() + pending.job.stdout()

    again = submit_rows([cfg], "local", gpus=1, folder=isolated / "jobs")[ROW]
    assert isinstance(again, Finished) and again.result().reused  # loaded, no job
    # the notebooks' path (executor='local'): the same row through run_rows is loaded too
    runs = run_rows("table1", ["fcn_r50_os32_pna"], device="cpu", overrides=tiny(isolated / "synthetic", 24),
                    launcher=job_launcher("local", folder=isolated / "jobs"))
    assert runs["fcn_r50_os32_pna"].reused and len(list((isolated / "jobs").glob("*_submitted.pkl"))) == 1


def test_a_notebook_runs_as_a_local_job_with_its_parameters(isolated):
    notebook = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("out = None\nvalue = 0\nrows = None", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell("import json, pathlib\npathlib.Path(out).write_text(json.dumps([value, rows]))")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = isolated / "tiny.ipynb"
    nbformat.write(notebook, path)
    job = submit_notebook(path, {"out": str(isolated / "seen.json"), "value": 3, "rows": ["a", "b"]}, "local",
                          folder=isolated / "jobs", output=isolated / "executed.ipynb")
    assert job.result() == str(isolated / "executed.ipynb")
    assert json.loads((isolated / "seen.json").read_text()) == [3, ["a", "b"]]  # types kept (-p text, -y JSON)


def test_slurm_where_there_is_none_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(cluster.shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match=r"^executor='slurm': no SLURM here \(sbatch is not on PATH\)"):
        job_launcher("slurm")
    with pytest.raises(ValueError, match="executor must be None, 'slurm' or 'local'"):
        job_launcher("kubernetes")


def test_a_job_stops_its_trainer_before_it_is_requeued(tmp_path):
    """RowJob.checkpoint (what submitit calls on its signal) signals the trainer and waits for it."""
    import subprocess
    import sys

    job = cluster.RowJob(load_config(ROW, "smoke"), gpus=1)
    marker = tmp_path / "stopped"
    trainer = subprocess.Popen([sys.executable, "-c", "import signal, sys, time, pathlib\n"
                                "signal.signal(signal.SIGTERM, lambda *a: (pathlib.Path(sys.argv[1]).write_text('saved'),"
                                " sys.exit(75)))\nprint('ready', flush=True)\ntime.sleep(600)", str(marker)],
                               stdout=subprocess.PIPE, text=True)
    assert trainer.stdout.readline() == "ready\n"
    job._launched = type("Launched", (), {"process": trainer, "stop": lambda self, sig: trainer.send_signal(sig)})()
    resubmission = job.checkpoint()
    assert marker.read_text() == "saved"  # the trainer's handler ran before checkpoint() returned
    assert isinstance(resubmission.function, cluster.RowJob) and resubmission.function._launched is None
