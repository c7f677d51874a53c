"""`pna runs` on a crafted runs/ folder: a finished, an interrupted, a failed, a live-locked and a
stale-locked run, as the trainer leaves them (file names and formats of pna.engine.rundir / runlock /
watch). `clean` deletes only what it says, never a live run, never a results JSON."""
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pna.cli import main
from pna.configs import config_hash, load_config
from pna.engine.runlock import RunLock

NOW = time.time()
DAY = 86400.0


def _run(root: Path, name: str, iters: int, files: dict, age_days: float = 0.0) -> Path:
    """A run folder holding ``files`` (name -> JSON value, list of log entries, or bytes), all
    changed ``age_days`` ago; config.json is the smoke config of the row with ``train.iters``."""
    folder = root / name
    folder.mkdir(parents=True)
    cfg = load_config("voc/fcn_r50_os32_pna", "smoke", [f"train.iters={iters}"])
    files = {"config.json": {"config_hash": config_hash(cfg), "config": cfg.to_dict()}, **files}
    for file, content in files.items():
        path = folder / file
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, list):
            path.write_text("".join(json.dumps(x) + "\n" for x in content))
        else:
            path.write_text(json.dumps(content))
        os.utime(path, (NOW - age_days * DAY, NOW - age_days * DAY))
    return folder


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _dead_pid() -> int:
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    return done.pid


@pytest.fixture
def crafted(tmp_path, monkeypatch):
    runs, results = tmp_path / "runs", tmp_path / "results"
    monkeypatch.setenv("PNA_RUNS_DIR", str(runs))
    monkeypatch.setenv("PNA_RESULTS_DIR", str(results))
    stages = {s: {"mIoU": m} for s, m in zip(["P0", "P1", "P2", "P3", "P4"], [0.396, 0.467, 0.675, 0.808, 0.856])}
    cfg = load_config("voc/fcn_r50_os32_pna", "smoke", ["train.iters=120"])
    done = {"config_hash": config_hash(cfg), "config": cfg.to_dict(), "iterations": 120,
            "metrics": {"stages": stages, "final_stage": "P4"}, "wall_time_s": 30.5, "git_commit": "abc123",
            "batch_split": {"text": "1 process(es) x 4 images x 1 accumulation steps = 4", "differences": []}}
    log = [{"type": "train", "iter": i, "loss": 2.0 - i / 100, "parts": {"P0": 1.0}, "lr": 1e-3} for i in (10, 20, 30)]
    paths = {
        "finished": _run(runs, "a_finished", 120, {"done.json": done, "final.pt": b"x" * 5000, "log.jsonl": log}, 3),
        "interrupted": _run(runs, "b_interrupted", 120, {"last.pt": b"x" * 3000, "log.jsonl": log + [
            {"type": "checkpoint", "iter": 20}]}, 3),
        "failed": _run(runs, "c_failed", 120, {"last.pt": b"x" * 2000, "log.jsonl": log, "failed.json": {
            "type": "failed", "iter": 27, "error": "NonFiniteError: non-finite loss at iteration 27 in output(s) P4"}}, 1),
        "running": _run(runs, "d_running", 120, {"log.jsonl": log}, 5),
        "stale": _run(runs, "e_stale", 120, {"last.pt": b"x" * 1000, "log.jsonl": log + [
            {"type": "checkpoint", "iter": 30}]}, 0),
    }
    (paths["stale"] / "lock.json").write_text(json.dumps({
        "pid": _dead_pid(), "host": socket.gethostname(), "started_s": NOW - 50, "heartbeat_s": NOW - 40,
        "command": "pna train x", "token": "gone"}))
    result = results / "table1" / "fcn_r50_os32_pna.smoke.json"
    result.parent.mkdir(parents=True)
    result.write_text(json.dumps(done))
    lock = RunLock(paths["running"]).acquire()  # this process trains it: a live lock
    os.utime(paths["running"] / "lock.json", (NOW - 5 * DAY, NOW - 5 * DAY))
    yield paths, result
    lock.release()


def _pna(capsys, *args: str) -> tuple[int, str]:
    status = main(["runs", *args])
    return status, capsys.readouterr().out


def test_the_listing_says_each_runs_status_iterations_and_final_miou(crafted, capsys):
    paths, _ = crafted
    status, out = _pna(capsys)
    lines = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert status == 0 and sorted(lines) == ["a_finished", "b_interrupted", "c_failed", "d_running", "e_stale"]
    assert " finished " in lines["a_finished"] and "P0 39.6 / P1 46.7 / P2 67.5 / P3 80.8 / P4 85.6" in lines["a_finished"]
    size = f"{_size(paths['finished']) / 1024:.1f} KiB"  # every file of the folder
    assert " 120/120 " in lines["a_finished"] and f"  {size}  3.0 d" in lines["a_finished"]
    assert "interrupted at iteration 20 of 120" in lines["b_interrupted"] and " 20/120 " in lines["b_interrupted"]
    assert ("failed after iteration 27: NonFiniteError: non-finite loss at iteration 27 in output(s) P4"
            in lines["c_failed"])
    assert f"running (at iteration 30 of 120; pid {os.getpid()}@{socket.gethostname()} since" in lines["d_running"]
    assert "interrupted at iteration 30 of 120 (stale lock: process" in lines["e_stale"]
    assert "no longer running" in lines["e_stale"]
    _, out = _pna(capsys, "--status", "interrupted")
    assert [x.split()[0] for x in out.splitlines()[1:]] == ["b_interrupted", "e_stale"]
    _, out = _pna(capsys, "--row", "cityscapes/")
    assert out.strip() == "no runs match"


def test_show_gives_the_config_diff_the_batch_split_and_the_provenance(crafted, capsys):
    status, out = _pna(capsys, "show", "a_fin")  # the unique start of a name
    assert status == 0 and "status: finished" in out
    assert "  train.iters: 120 -> 120" not in out and "(the default config)" in out  # the smoke default is 120
    assert "1 process(es) x 4 images x 1 accumulation steps = 4" in out
    assert "git_commit: abc123" in out and "wall_time_s: 30.5" in out and "(this run's)" in out
    _, out = _pna(capsys, "show", "b_interrupted")
    assert "  train.iters: 120 -> 120" not in out
    _, out = _pna(capsys, "show", "c_failed")
    assert "status: failed after iteration 27" in out


def test_show_of_a_changed_config_lists_each_changed_key(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PNA_RUNS_DIR", str(tmp_path))
    _run(tmp_path, "changed", 7, {})
    _, out = _pna(capsys, "show", "changed")
    assert "  train.iters: 120 -> 7" in out.splitlines()


def test_clean_deletes_only_what_it_names_and_never_a_results_json_or_a_live_run(crafted, capsys, monkeypatch):
    paths, result = crafted
    failed_bytes = _size(paths["failed"])
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("n\n"))
    status, out = _pna(capsys, "clean", "--interrupted")  # asks; the answer is no
    assert status == 1 and "nothing deleted" in out and paths["interrupted"].is_dir() and paths["stale"].is_dir()
    status, out = _pna(capsys, "clean", "--failed", "--yes")
    assert status == 0 and not paths["failed"].exists()
    assert all(p.is_dir() for k, p in paths.items() if k != "failed")
    assert f"freed {failed_bytes / 1024:.1f} KiB ({failed_bytes} bytes)" in out
    status, out = _pna(capsys, "clean", "--older-than", "2d", "--yes")  # any status, finished included
    assert not paths["finished"].exists() and not paths["interrupted"].exists()
    assert paths["running"].is_dir() and paths["stale"].is_dir()  # live lock; changed today
    assert f"skipped {paths['running']}: running" in out
    assert json.loads(result.read_text())["metrics"]["stages"]["P4"]["mIoU"] == 0.856  # the result stays


def test_clean_needs_a_choice_and_a_readable_age(crafted, capsys):
    assert main(["runs", "clean", "--yes"]) == 1
    assert "say what to delete" in capsys.readouterr().err
    assert main(["runs", "clean", "--older-than", "soon"]) == 1
    assert "--older-than 'soon': expected a number and a unit" in capsys.readouterr().err


def test_compare_draws_the_runs_and_tabulates_their_final_stages(crafted, capsys, tmp_path):
    status, out = _pna(capsys, "compare", "a_finished", "b_interrupted", "--out", str(tmp_path / "cmp"))
    assert status == 0
    table = (tmp_path / "cmp.md").read_text().splitlines()
    assert table[0].startswith("| run | row | status | P0 mIoU | P1 mIoU | P2 mIoU | P3 mIoU | P4 mIoU |")
    assert "| 39.6 | 46.7 | 67.5 | 80.8 | 85.6 |" in table[2] and table[2].startswith("| `a_finished` |")
    assert table[3].startswith("| `b_interrupted` | voc/fcn_r50_os32_pna | interrupted at iteration 20 of 120 | - |")
    assert (tmp_path / "cmp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
