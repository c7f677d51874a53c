"""One run folder, one writer (pna.engine.runlock): two trainings of one config never share a run
folder; a lock whose holder is gone (dead pid, silent host, requeued SLURM job) is taken over with a
line naming it; the lock is released on every way out."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pna.configs import config_hash, load_config
from pna.engine.rundir import RunDir, default_run_dir
from pna.engine.runlock import RunLock, RunLocked, lock_holder, stale_reason
from pna.engine.train import train
from tiny_runs import ROW, isolated, tiny  # noqa: F401 (isolated: a fixture)

ROOT = Path(__file__).resolve().parents[1]


def _cli(tmp: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PNA_RUNS_DIR": str(tmp / "runs"), "PNA_RESULTS_DIR": str(tmp / "results"),
           "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "pna", "train", "--config", ROW, "--no-progress", *args],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _train_iterations(run: Path) -> list[int]:
    lines = (run / "log.jsonl").read_text().splitlines()
    return [e["iter"] for e in map(json.loads, lines) if e["type"] == "train"]


def _lock(folder: Path, **fields) -> dict:
    """A lock file as another process would have written it (the documented format)."""
    now = time.time()
    record = {"pid": 1, "host": "node-elsewhere", "started_s": now - 100, "heartbeat_s": now, "command": "pna train x",
              "slurm_job_id": None, "slurm_restart": 0, "process_start": None, "token": "old-holder", **fields}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "lock.json").write_text(json.dumps(record))
    return record


def _dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


@pytest.mark.slow
def test_a_second_training_of_the_same_config_refuses_then_with_wait_reuses_the_finished_run(tmp_path):
    """Two identical `pna train` started 2 s apart shared one run folder, both exited 0, and log.jsonl
    held iterations twice. The first is paused (SIGSTOP) while it holds the lock, so that the others
    meet it training whatever the machine's speed."""
    sets, iters = tiny(tmp_path / "synthetic", 6), 6
    first = _cli(tmp_path, "--set", *sets)
    run = tmp_path / "runs" / default_run_dir("fcn_r50_os32_pna", "smoke",
                                              config_hash(load_config(ROW, "smoke", sets))).name
    deadline = time.time() + 600  # a guard against a hung run, not a speed claim
    while not ((run / "log.jsonl").is_file() and (run / "lock.json").is_file()):
        assert first.poll() is None, first.stdout.read()
        assert time.time() < deadline
        time.sleep(0.02)
    first.send_signal(signal.SIGSTOP)
    try:
        second = _cli(tmp_path, "--set", *sets)
        waiter = _cli(tmp_path, "--wait", "--set", *sets)
        output = second.communicate(timeout=600)[0]
        errors = [x for x in output.splitlines() if x.startswith("pna train: error:")]
        assert second.returncode == 1 and len(errors) == 1, output
        assert f"{run} is being trained by pid {first.pid}@{socket.gethostname()} since " in errors[0]
        assert "(pna train --config voc/fcn_r50_os32_pna" in errors[0] and "--wait" in errors[0]
        waited = [waiter.stdout.readline()]
        while "waiting for it (--wait)" not in waited[-1]:
            assert waited[-1], f"the waiter ended without waiting: {''.join(waited)}"
            waited.append(waiter.stdout.readline())
    finally:
        first.send_signal(signal.SIGCONT)
    assert first.wait(timeout=600) == 0, first.stdout.read()
    rest = waiter.communicate(timeout=600)[0]
    assert waiter.returncode == 0 and "reusing the finished run" in rest, "".join(waited) + rest
    assert _train_iterations(run) == list(range(1, iters + 1)), "each iteration trained once, by one process"
    assert not (run / "lock.json").exists()


@pytest.mark.slow
def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_line_naming_it(isolated, capsys):
    cfg = load_config(ROW, "smoke", tiny(isolated / "synthetic", 1))
    run = default_run_dir("fcn_r50_os32_pna", "smoke", config_hash(cfg))
    pid = _dead_pid()
    _lock(run, pid=pid, host=socket.gethostname(), command="pna train --config killed")
    result = train(cfg, progress=False)
    assert not result.reused and (run / "done.json").is_file()
    printed = capsys.readouterr().out
    assert f"taking over the stale lock of pid {pid}@{socket.gethostname()}" in printed
    assert "(pna train --config killed)" in printed and f"process {pid} is no longer running" in printed
    assert not (run / "lock.json").exists()  # released at the end


def test_a_lock_of_another_host_is_live_until_its_heartbeat_is_ten_minutes_old(tmp_path):
    now = time.time()
    _lock(tmp_path, heartbeat_s=now - 60)
    with pytest.raises(RunLocked, match=r"being trained by pid 1@node-elsewhere since .*\(pna train x\)"):
        RunLock(tmp_path).acquire()
    _lock(tmp_path, heartbeat_s=now - 601)  # the documented limit is 600 s
    said = []
    with RunLock(tmp_path, say=said.append):
        assert lock_holder(tmp_path)["pid"] == os.getpid()
    assert len(said) == 1 and "pid 1@node-elsewhere" in said[0] and "no heartbeat from node-elsewhere" in said[0]
    assert lock_holder(tmp_path) is None


def test_a_requeued_slurm_job_takes_over_its_own_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_RESTART_COUNT", "0")
    _lock(tmp_path, slurm_job_id="4242", slurm_restart=0)  # the same start of the job, on another node: live
    with pytest.raises(RunLocked, match="SLURM job 4242"):
        RunLock(tmp_path).acquire()
    monkeypatch.setenv("SLURM_RESTART_COUNT", "1")  # what SLURM sets in a requeued job
    said = []
    RunLock(tmp_path, say=said.append).acquire().release()
    assert "SLURM job 4242 was requeued" in said[0]


def test_a_pid_that_now_belongs_to_another_process_is_stale(tmp_path):
    if not Path(f"/proc/{os.getppid()}/stat").is_file():
        pytest.skip("no /proc here: process start times are not known")
    holder = _lock(tmp_path, pid=os.getppid(), host=socket.gethostname(), process_start="1")
    assert "now belongs to another process" in stale_reason(holder)
    real_start = Path(f"/proc/{os.getppid()}/stat").read_text().rsplit(")", 1)[1].split()[19]
    assert stale_reason({**holder, "process_start": real_start}) is None


def test_the_holder_refreshes_its_heartbeat(tmp_path, monkeypatch):
    import pna.engine.runlock as runlock

    monkeypatch.setattr(runlock, "HEARTBEAT_S", 0.05)
    with RunLock(tmp_path) as lock:
        first = lock_holder(tmp_path)["heartbeat_s"]
        deadline = time.time() + 60
        while lock_holder(tmp_path)["heartbeat_s"] == first:
            assert time.time() < deadline, "no heartbeat within 60 s"
            time.sleep(0.02)
        assert lock_holder(tmp_path)["token"] == lock.token


@pytest.mark.slow
def test_a_finished_run_being_trained_again_is_not_read(isolated):
    """A live lock on a finished run (an --overwrite training it again) means it is not finished."""
    cfg = load_config(ROW, "smoke", tiny(isolated / "synthetic", 1))
    result = train(cfg, progress=False)
    with RunLock(result.run_dir):
        with pytest.raises(RunLocked, match="is being trained by pid"):
            train(cfg, progress=False)
    assert train(cfg, progress=False).reused


def test_the_lock_is_released_when_training_fails(isolated, monkeypatch):
    cfg = load_config(ROW, "smoke", tiny(isolated / "synthetic", 2))
    from pna.engine.train import Trainer

    def broken(self, stop_after=None):
        assert lock_holder(self.run.path)["pid"] == os.getpid()  # held while training
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(Trainer, "fit", broken)
    with pytest.raises(RuntimeError, match="broken on purpose"):
        train(cfg, progress=False)
    run = RunDir(default_run_dir("fcn_r50_os32_pna", "smoke", config_hash(cfg)))
    assert run.path.is_dir() and lock_holder(run.path) is None


def test_notebooks_and_launches_refuse_a_row_another_process_trains_before_training_any(isolated):
    """run_rows checks every row's run folder before the first row trains; launch() before it starts
    torchrun; with wait they would wait for it instead."""
    from pna.analysis.experiments import make_config, run_rows
    from pna.engine.launch import Processes, launch

    overrides = tiny(isolated / "synthetic", 1)
    cfg = make_config("table1", "fcn_r50_os32_pna", overrides=overrides)
    run = default_run_dir(cfg.model.name, cfg.profile, config_hash(cfg))
    run.mkdir(parents=True)
    with RunLock(run):
        with pytest.raises(RunLocked, match=f"{run} is being trained by pid {os.getpid()}@"):
            run_rows("table1", ["fcn_r50_os32", "fcn_r50_os32_pna"], overrides=overrides)
        with pytest.raises(RunLocked, match="pass --wait"):
            launch(cfg, Processes(gpus=2))
    assert not (isolated / "results").exists()
    assert sorted(p.name for p in (isolated / "runs").iterdir()) == [run.name]  # fcn_r50_os32 not trained first
