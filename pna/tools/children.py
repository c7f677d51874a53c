"""Run rehearsal rows in child processes, so that a crash, a hang or a memory peak costs one row.

:func:`child_lines` starts ``python -m pna rehearse --child NAME ...`` and yields the JSON line that
the child prints for each row as soon as that row ends. A child that exits (a crash: a segfault,
a dead CUDA context) or goes quiet for ``timeout`` seconds (it is killed) before printing a row's
line gets that row reported failed, with the exit code and the last line of its stderr or the
timeout; a new child continues with the rows after it.

Example (the tests run it with a fake child)::

    >>> lines = child_lines(["voc/fcn_r50_os32"], "cpu", 1800, [])   # doctest: +SKIP
"""
from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from typing import Iterator, Sequence

STDERR_TAIL_CHARS = 4000  # enough for the last line of a traceback


def _command(names: Sequence[str], device: str, workdir: str, options: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "pna", "rehearse", "--child", *names, "--device", device, "--workdir", workdir,
            *options]


def _stdout_lines(stream, into: queue.Queue) -> None:
    for text in stream:
        into.put(text)
    into.put(None)  # the child closed its stdout: it ended


def _row_line(text: str) -> dict | None:
    """A row's JSON line, or None for anything else the child printed (log lines, warnings)."""
    if not text.startswith("{"):
        return None
    try:
        line = json.loads(text)
    except ValueError:
        return None
    return line if isinstance(line, dict) and "config" in line and "status" in line else None


def _stderr_tail(path: str) -> str:
    with open(path, errors="replace") as f:
        f.seek(max(0, os.path.getsize(path) - STDERR_TAIL_CHARS))
        lines = f.read().strip().splitlines()
    return lines[-1] if lines else "no output"


def child_lines(names: Sequence[str], device: str, timeout: float, options: Sequence[str],
                command=_command) -> Iterator[dict]:
    """The line of every row of ``names``, in order, rehearsed one after another in child processes
    (``options``: extra arguments for the child; ``command(names, device, workdir, options)`` builds
    its command line). ``timeout`` bounds each row, not the whole list."""
    remaining = list(names)
    while remaining:
        with tempfile.TemporaryDirectory(prefix="pna-rehearse-") as tmp:
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "PNA_RUNS_DIR": f"{tmp}/runs", "PNA_RESULTS_DIR": f"{tmp}/results"}
            stderr_path = os.path.join(tmp, "stderr.txt")
            with open(stderr_path, "w") as stderr:
                child = subprocess.Popen(command(remaining, device, tmp, options), stdout=subprocess.PIPE,
                                         stderr=stderr, text=True, env=env)
            lines: queue.Queue = queue.Queue()
            threading.Thread(target=_stdout_lines, args=(child.stdout, lines), daemon=True).start()
            reason, deadline = None, time.monotonic() + timeout
            while remaining:
                try:
                    text = lines.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    child.kill()
                    reason = f"timed out after {timeout:.0f} s"
                    break
                if text is None:
                    break
                line = _row_line(text)
                if line is not None:
                    if line.get("config") != remaining[0]:
                        child.kill()
                        reason = f"the child answered for {line.get('config')!r}, not {remaining[0]!r}"
                        break
                    remaining.pop(0)
                    deadline = time.monotonic() + timeout
                    yield line
            child.wait()
            child.stdout.close()
            if remaining:  # the child ended or was stopped before this row's line
                reason = reason or f"exit {child.returncode}: {_stderr_tail(stderr_path)}"
                yield {"config": remaining.pop(0), "device": device, "status": "failed", "error": reason}
