"""The rehearsal's GPU measurements, on CPU: steady-state seconds from the log, an out-of-memory row
recorded as ``oom`` (not a crash), child processes that crash or hang cost one row, the authors'
per-GPU batch, and which rows fit which GPU from a hand-made ``cuda.csv``."""
import csv
import subprocess
import sys
import textwrap

import pytest
import torch

from pna.paths import REPO_ROOT
from pna.tools.children import child_lines
from pna.analysis.card_fit import CUDA_RESERVE_MB, fit_markdown, fit_table
from pna.tools.measure import oom_asked_mb, steady_seconds
from pna.tools.rehearse import COLUMNS, authors_batch, rehearse_row

# torch's message, as the CUDA caching allocator words it (c10/cuda/CUDACachingAllocator.cpp)
TORCH_OOM = ("CUDA out of memory. Tried to allocate 1.50 GiB. GPU 0 has a total capacity of 23.55 GiB of which "
             "1.02 GiB is free. Of the allocated memory 20.11 GiB is allocated by PyTorch, and 1.20 GiB is reserved "
             "by PyTorch but unallocated.")


def test_steady_seconds_leave_out_the_warmup_and_follow_the_clock_across_a_resume():
    # cumulative time_s: 10 s (compilation), 2 s, then a resume (the clock continues), 1.5 s, 1.5 s
    log = [{"type": "train", "iter": 1, "time_s": 10.0}, {"type": "train", "iter": 2, "time_s": 12.0},
           {"type": "eval", "iter": 2, "seconds": 3.0},
           {"type": "train", "iter": 3, "time_s": 13.5}, {"type": "train", "iter": 4, "time_s": 15.0}]
    assert steady_seconds(log, 2) == pytest.approx(1.5)
    assert steady_seconds(log, 1) == pytest.approx(5 / 3)
    assert steady_seconds(log, 0) == pytest.approx(15.0 / 4)  # the CPU rehearsal's figure: all iterations
    with pytest.raises(ValueError, match="every iteration"):
        steady_seconds([e for e in log if e.get("iter") != 3], 1)
    with pytest.raises(ValueError, match="warmup"):
        steady_seconds(log, 4)


def test_the_allocation_an_out_of_memory_error_asked_for():
    assert oom_asked_mb(torch.cuda.OutOfMemoryError(TORCH_OOM)) == 1536
    assert oom_asked_mb(RuntimeError(TORCH_OOM.replace("1.50 GiB", "20.00 MiB"))) == 20
    assert oom_asked_mb(RuntimeError("CUDA error: out of memory")) != oom_asked_mb(RuntimeError("x"))  # nan vs None
    assert oom_asked_mb(RuntimeError("size mismatch")) is None


def test_a_row_that_runs_out_of_memory_is_recorded_as_oom(tmp_path, monkeypatch):
    import pna.engine.train

    def out_of_memory(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError(TORCH_OOM)

    monkeypatch.setattr(pna.engine.train, "train", out_of_memory)
    line = rehearse_row("voc/fcn_r50_os32", "cpu", tmp_path, batch="authors", iters=3, warmup=1)
    assert (line["status"], line["asked_mb"], line["batch"]) == ("oom", 1536, 4)
    assert line["error"].startswith("training: OutOfMemoryError: CUDA out of memory")
    assert line["peak_mb"] > 0 and set(line) - {"traceback"} <= set(COLUMNS)


def test_the_authors_per_gpu_batch_is_the_audited_one():
    # docs/authors_audit.csv: mm/voc/fcn_r50 batch_per_gpu 4, mm/voc/deeplabv3_r101 batch_per_gpu 8
    assert authors_batch("voc/fcn_r50_os32_pna") == 4
    assert authors_batch("voc/deeplabv3_r101_os16_pna") == 8


FAKE_CHILD = textwrap.dedent("""
    import json, sys, time
    for name in sys.argv[1:]:
        if name == "crash":
            sys.stderr.write("Traceback ...\\nRuntimeError: CUDA error: an illegal memory access\\n")
            sys.exit(3)
        if name == "hang":
            time.sleep(60)
        print("some log line", flush=True)
        print("{a line that is not a row's}", flush=True)
        print(json.dumps({"loss": 1.0}), flush=True)
        print(json.dumps({"config": name, "status": "ok", "error": ""}), flush=True)
""")


def test_a_crashed_or_hung_child_costs_one_row_and_a_new_child_goes_on(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(FAKE_CHILD)
    started = []

    def command(names, device, workdir, options):
        started.append(list(names))
        return [sys.executable, str(script), *names]

    lines = list(child_lines(["a", "crash", "b", "hang", "c"], "cuda", timeout=5, options=[], command=command))
    assert [(x["config"], x["status"]) for x in lines] == [
        ("a", "ok"), ("crash", "failed"), ("b", "ok"), ("hang", "failed"), ("c", "ok")]
    assert lines[1]["error"] == "exit 3: RuntimeError: CUDA error: an illegal memory access"
    assert lines[3]["error"] == "timed out after 5 s"
    assert started == [["a", "crash", "b", "hang", "c"], ["b", "hang", "c"], ["c"]]


def test_the_command_line_refuses_a_bad_batch_and_too_few_iterations():
    def run(*args):
        return subprocess.run([sys.executable, "-m", "pna", "rehearse", *args, "--out", "-"], capture_output=True,
                              text=True, cwd=REPO_ROOT)

    done = run("--batch", "four")
    assert done.returncode == 2 and "--batch must be a positive integer or 'authors', got 'four'" in done.stderr
    done = run("--rows", "voc/fcn_r50_os32", "--iters", "3", "--warmup", "3")
    assert done.returncode != 0 and "warmup in [0, iters)" in done.stderr


def test_missing_rehearses_only_the_rows_not_done_and_keeps_the_others(tmp_path):
    path = tmp_path / "cuda.csv"
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["config", "status", "peak_mb", "error"])
        writer.writeheader()
        writer.writerows([{"config": "voc/fcn_r50_os32", "status": "ok", "peak_mb": "123", "error": ""},
                          {"config": "voc/fcn_r50_os8", "status": "failed", "peak_mb": "", "error": "boom"}])
    # a timeout too short for any row: the row that is run fails at once, without training
    done = subprocess.run([sys.executable, "-m", "pna", "rehearse", "--rows", "voc/fcn_r50_os32", "voc/fcn_r50_os8",
                           "--missing", "--timeout", "0.01", "--out", str(path)], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=300)
    assert "1 of the rows are done" in done.stdout and "rehearsing the other 1" in done.stdout, done.stdout
    assert "[1/1] voc/fcn_r50_os8: failed" in done.stdout and done.returncode == 1
    lines = {x["config"]: x for x in csv.DictReader(path.open())}
    assert lines["voc/fcn_r50_os32"]["peak_mb"] == "123"  # kept, not run again
    assert lines["voc/fcn_r50_os8"]["error"] == "timed out after 0 s"  # run again, result merged


def test_which_rows_fit_which_gpu_from_a_hand_made_table(tmp_path):
    assert CUDA_RESERVE_MB == 1024  # the hand-computed needs below add 1 GiB
    rows = [  # config, batch, status, peak_mb, reserved_mb, gpu_total_mb (an 80 GB card, then a 40 GB one)
        ("small", 4, "ok", 8000, 9216, 81559),      # 9 + 1 = 10 GiB: fits everywhere
        ("edge", 4, "ok", 20000, 23552, 81559),     # 23 + 1 = 24 GiB: just fits 24
        ("over", 4, "ok", 20000, 23553, 81559),     # one MiB more: not on 24
        ("big", 8, "ok", 30000, 39000, 81559),      # 39000 + 1024 = 40024 MiB: fits 40 (40960)
        ("huge", 4, "oom", 39000, 40000, 40960),    # out of memory on a 40 GB card: not 24 or 40, 80 unknown
        ("broken", 4, "failed", "", "", 81559),
        ("old", 2, "ok", 5120, "", ""),             # a table without reserved_mb: peak_mb + 1 GiB = 6 GiB
        ("host", 2, "ok", 5120, "", ""),            # a CPU rehearsal's row: host memory, says nothing
    ]
    path = tmp_path / "cuda.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["config", "device", "batch", "status", "peak_mb", "reserved_mb", "gpu_total_mb"])
        writer.writerows((row[0], "cpu" if row[0] == "host" else "cuda", *row[1:]) for row in rows)
    table = fit_table(path)
    got = {row["config"]: (row["need_gb"], row["24 GB"], row["40 GB"], row["80 GB"]) for row in table}
    assert got == {"small": (10.0, "yes", "yes", "yes"), "edge": (24.0, "yes", "yes", "yes"),
                   "over": (24.0, "no", "yes", "yes"), "big": (39.1, "no", "yes", "yes"),
                   "huge": ("> 40", "no", "no", "?"), "broken": ("", "?", "?", "?"),
                   "old": (6.0, "yes", "yes", "yes"), "host": ("", "?", "?", "?")}
    markdown = fit_markdown(table).splitlines()
    assert markdown[0] == "| config | batch | status | need_gb | 24 GB | 40 GB | 80 GB |"
    assert markdown[6] == "| huge | 4 | oom | > 40 | no | no | ? |"
    with pytest.raises(FileNotFoundError, match="gpu_check.sh"):
        fit_table(tmp_path / "missing.csv")
