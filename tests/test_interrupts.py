"""Preemption and failure (pna.engine.interrupts): SIGTERM saves and exits 75, Ctrl-C (SIGINT) saves
and exits 130, the same command resumes; a non-finite loss stops with one line and writes no result;
AMP skips are counted."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pna.configs import load_config
from pna.engine.checkpoint import load_checkpoint
from pna.engine.interrupts import NonFiniteError, SkippedSteps, StopSignals, check_finite_weights

ROOT = Path(__file__).resolve().parents[1]
ROW = "voc/fcn_r50_os32_pna"
# The exit status of a run stopped by a signal with its state saved: EX_TEMPFAIL of sysexits.h, as the
# README promises ("exits with status 75") and the cluster requeue (pna.tools.cluster) expects.
EX_TEMPFAIL = 75
# AMP skips in a row that stop a run: GradScaler starts at 2^16 and halves its scale at every skip
# (torch.amp.GradScaler init_scale=65536.0, backoff_factor=0.5), so 32 skips take it to 2^-16.
AMP_SKIP_LIMIT = 32


def tiny(cache: Path, iters: int, *extra: str) -> list[str]:
    return [f"data.root={str(cache)!r}", "data.options={'num_train': 16, 'num_val': 4, 'size': 32, 'seed': 0}",
            "data.crop=(32, 32)", f"train.iters={iters}", "train.batch_size=4", "train.checkpoint_interval=0",
            "train.log_interval=1", "train.eval_interval=0", "model.overrides.embed_dims=(32, 32, 32, 32)",
            "model.overrides.head_channels=16", "model.overrides.aux_channels=16", "model.overrides.window_size=3",
            *extra]


def _train(tmp: Path, sets: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PNA_RUNS_DIR": str(tmp / "runs"), "PNA_RESULTS_DIR": str(tmp / "results"),
           "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "pna", "train", "--config", ROW, "--no-progress",
                             "--out", str(tmp / "run"), "--set", *sets], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _log(run: Path) -> list[dict]:
    path = run / "log.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()] if path.is_file() else []


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1], ids=["SIGTERM", "SIGUSR1"])
def test_a_signal_saves_the_current_iteration_and_the_same_command_resumes(tmp_path, sig):
    sets, run, k, iters = tiny(tmp_path / "synthetic", 24), tmp_path / "run", 3, 24
    victim = _train(tmp_path, sets)
    deadline = time.time() + 600  # a guard against a hung run, not a speed claim
    while not any(e["type"] == "train" and e["iter"] >= k for e in _log(run)):
        assert victim.poll() is None, f"ended before iteration {k}:\n{victim.stdout.read()}"
        assert time.time() < deadline, f"iteration {k} not logged"
        time.sleep(0.05)
    victim.send_signal(sig)
    output = victim.communicate(timeout=600)[0]
    assert victim.returncode == EX_TEMPFAIL, output
    saved = load_checkpoint(run / "last.pt")["iteration"]
    assert k <= saved < iters, output
    assert f"stopped at iteration {saved} on {sig.name}" in output
    assert _log(run)[-1] == {"type": "interrupted", "iter": saved, "signal": sig.name}
    assert not (run / "done.json").exists() and not (tmp_path / "results").exists()
    assert not (run / "lock.json").exists(), "the run folder's lock is released on a signal"

    again = _train(tmp_path, sets)
    output = again.communicate(timeout=600)[0]
    assert again.returncode == 0, output
    assert "resuming" in output and (run / "done.json").is_file()
    trained = [e["iter"] for e in _log(run) if e["type"] == "train"]
    assert trained == list(range(1, iters + 1)), "each iteration trained once, the resume continuing at the save"


@pytest.mark.slow
def test_a_huge_learning_rate_stops_with_one_line_and_writes_no_result(tmp_path):
    # checkpoints every iteration: the last good one must stay as it was
    sets = tiny(tmp_path / "synthetic", 12, "optim.lr=1e9", "optim.warmup_iters=0", "train.checkpoint_interval=1")
    done = _train(tmp_path, sets)
    output = done.communicate(timeout=600)[0]
    errors = [x for x in output.splitlines() if x.startswith("pna train: error:")]
    assert done.returncode == 1 and len(errors) == 1, output
    run = tmp_path / "run"
    assert "non-finite loss at iteration" in errors[0] and "output(s) P" in errors[0]
    failed_at = int(errors[0].split("at iteration ")[1].split(" ")[0])
    assert not (run / "done.json").exists() and not (run / "final.pt").exists()
    assert not (tmp_path / "results").exists()  # no results JSON anywhere
    if (run / "last.pt").exists():
        last = load_checkpoint(run / "last.pt")
        assert last["iteration"] < failed_at
        assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
        assert f"holds iteration {last['iteration']}" in errors[0]


def test_stop_signals_note_the_signal_and_restore_the_handler():
    before = signal.getsignal(signal.SIGTERM)
    calls = []
    with StopSignals(on_signal=lambda: calls.append(1)) as stop:
        assert stop.received is None
        os.kill(os.getpid(), signal.SIGTERM)  # would end the test process without the handler
        assert stop.received == "SIGTERM" and calls == [1]
    assert signal.getsignal(signal.SIGTERM) is before


def test_amp_skips_in_a_row_fail_only_at_the_limit():
    counter = SkippedSteps()
    for i in range(AMP_SKIP_LIMIT - 1):
        counter.record(True, i + 1, "row", [], "")
    counter.record(False, AMP_SKIP_LIMIT, "row", [], "")  # one good step resets the count
    for i in range(AMP_SKIP_LIMIT - 1):
        counter.record(True, i + 1, "row", [], "")
    with pytest.raises(NonFiniteError, match=f"skipped {AMP_SKIP_LIMIT} steps in a row up to iteration 99 "
                                             r"\(non-finite loss in P4\)"):
        counter.record(True, 99, "row", ["P4"], "")


def test_a_model_with_a_nan_weight_is_not_saved():
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1), torch.nn.BatchNorm2d(1))
    check_finite_weights(model, "row", 3, "")
    model[1].running_var.fill_(float("nan"))
    with pytest.raises(NonFiniteError, match="weight 1.running_var is not finite after iteration 3"):
        check_finite_weights(model, "row", 3, "last.pt holds iteration 2")


def test_a_non_finite_loss_in_process_names_the_iteration_and_outputs(tmp_path, monkeypatch):
    monkeypatch.setenv("PNA_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("PNA_RESULTS_DIR", str(tmp_path / "results"))
    from pna.engine.train import train
    from pna.models import SegmentationLoss

    original = SegmentationLoss.forward

    def nan_aux_at_third_call(self, outputs, labels):
        total, parts = original(self, outputs, labels)
        nan_aux_at_third_call.calls += 1
        if nan_aux_at_third_call.calls == 3:
            parts["aux"] = parts["aux"] * float("nan")
            total = total + parts["aux"]
        return total, parts

    nan_aux_at_third_call.calls = 0
    monkeypatch.setattr(SegmentationLoss, "forward", nan_aux_at_third_call)
    cfg = load_config(ROW, "smoke", tiny(tmp_path / "synthetic", 4, "train.micro_batch=2"))  # 2 calls per iteration
    with pytest.raises(NonFiniteError, match=r"non-finite loss at iteration 2 in output\(s\) aux; .*no checkpoint"):
        train(cfg, progress=False)
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_ctrl_c_saves_the_state_exits_130_and_a_second_one_during_the_save_corrupts_nothing(tmp_path, monkeypatch,
                                                                                           capsys):
    """SIGINT (Ctrl-C; a notebook's "interrupt kernel" in in-process training) raised KeyboardInterrupt
    where it landed: every iteration since the last checkpoint was lost. Here the signal comes from
    inside the process after iteration 3 is logged (as it would from a terminal between two steps):
    the step begun next (4) ends, last.pt holds it, the status is 130, the same command resumes."""
    from pna.cli import main
    import pna.engine.train as engine_train

    monkeypatch.setenv("PNA_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("PNA_RESULTS_DIR", str(tmp_path / "results"))
    real_log, real_save = engine_train.Trainer._log, engine_train.atomic_save

    def log_then_interrupt(self, entry):
        real_log(self, entry)
        if entry.get("iter") == 3 and entry["type"] == "train":
            os.kill(os.getpid(), signal.SIGINT)

    def interrupted_again_while_saving(obj, path):
        os.kill(os.getpid(), signal.SIGINT)  # a second Ctrl-C while last.pt is written
        real_save(obj, path)

    monkeypatch.setattr(engine_train.Trainer, "_log", log_then_interrupt)
    monkeypatch.setattr(engine_train, "atomic_save", interrupted_again_while_saving)
    command = ["train", "--config", ROW, "--no-progress", "--out", str(tmp_path / "run"), "--set",
               *tiny(tmp_path / "synthetic", 6)]
    assert main(command) == 130  # 128 + SIGINT, as a shell reports Ctrl-C
    run = tmp_path / "run"
    assert "stopped at iteration 4 on SIGINT; resume state in" in capsys.readouterr().err
    assert load_checkpoint(run / "last.pt")["iteration"] == 4
    assert _log(run)[-1] == {"type": "interrupted", "iter": 4, "signal": "SIGINT"}
    assert not (run / "lock.json").exists() and not [p for p in run.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(engine_train.Trainer, "_log", real_log)
    monkeypatch.setattr(engine_train, "atomic_save", real_save)
    assert main(command) == 0  # the same command again
    assert [e["iter"] for e in _log(run) if e["type"] == "train"] == list(range(1, 7))


def test_an_interrupted_checkpoint_write_leaves_the_previous_one_whole(tmp_path):
    from pna.engine.checkpoint import _atomic_write, atomic_save, read_torch_file

    path = tmp_path / "last.pt"
    atomic_save({"iteration": 2}, path)

    def half_then_interrupt(f):
        f.write(b"PK\x03\x04 half a zip")
        raise KeyboardInterrupt  # a Ctrl-C that escapes while the new state is written

    with pytest.raises(KeyboardInterrupt):
        _atomic_write(path, "wb", half_then_interrupt)
    assert read_torch_file(path) == {"iteration": 2} and [p.name for p in tmp_path.iterdir()] == ["last.pt"]
