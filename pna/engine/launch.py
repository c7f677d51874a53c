"""Run one row in processes of its own: ``torchrun -m pna train`` for several GPUs (or nodes), read
its result back, and say which rank failed.

A notebook trains in its own process when one process is asked for (the default on a machine with at
most one GPU, and in the smoke profile). For more, :func:`launch` starts::

    python -m torch.distributed.run --nproc-per-node=G [--nnodes=N --rdzv-backend=c10d
        --rdzv-endpoint=HOST:PORT --rdzv-id=<hash>] --log-dir=<run>/ranks --tee=3 --local-ranks-filter=0
        -m pna train --config <row> --profile <profile> --set ... --out <run dir>

(torchrun is torch's own launcher; ``--standalone`` on one node), streams rank 0's output into the
notebook (progress as ``PNA_PROGRESS_LINES`` lines, :mod:`pna.engine.progress`), and takes the run's
``done.json`` and results JSON as its result only when they were written by this config (its hash).
A failing rank fails the call with that rank's last error lines (``<run>/ranks/.../<rank>/stderr.log``).

``gpus`` on a CPU-only device means gloo processes: ``device="cpu", gpus=2`` trains on 2 processes
that share the CPU's cores (each gets ``usable CPUs / gpus`` threads), the same code path as 2 GPUs.

A signal (SIGTERM, SIGUSR1) or a kernel interrupt while a launched run trains is passed to torchrun,
which passes SIGTERM to every rank; they finish their step, save ``last.pt`` and stop
(:mod:`pna.engine.interrupts`); torchrun waits :data:`SHUTDOWN_S` for that before it kills them.

The launched ``pna train`` holds the run folder's lock (:mod:`pna.engine.runlock`; rank 0 under
torchrun). A folder another process is training is refused here before anything starts, unless
``wait``: then the launched command waits for it (``--wait``) and uses, or resumes, its run.

Example::

    >>> resolve_processes(gpus=None, device="cpu").world
    1
    >>> resolve_processes(gpus=2, nodes=2, device="cpu")
    Traceback (most recent call last):
    ...
    ValueError: nodes=2: a multi-node run needs rdzv_endpoint='HOST:PORT' (a host every node can reach, e.g. the first node's name and a free port)
"""
from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import torch

from pna.configs import Config, config_hash, load_config
from pna.configs.schema import usable_cpus
from pna.engine.interrupts import EXIT_INTERRUPTED, EXIT_SIGINT, StopSignals, TrainingInterrupted
from pna.engine.records import result_path
from pna.engine.rundir import RunDir, default_run_dir
from pna.engine.runlock import RunLocked
from pna.engine.train import RunResult, train
from pna.paths import REPO_ROOT, read_json, read_text, results_dir

# Seconds torchrun gives its ranks after SIGTERM to finish the step and write last.pt before SIGKILL
# (torch's own default is 30 s, short for writing a Swin-B checkpoint with its AdamW state to a
# network file system). Read by torch >= 2.10 (TORCH_ELASTIC_SHUTDOWN_TIMEOUT); older ones keep 30 s.
SHUTDOWN_S = 120
PROGRESS_LINES = 20          # progress lines of a launched run in the notebook
ERROR_LINES = 5              # last lines of a failing rank's output quoted in the error
TICK_S = 2.0                 # while a launched run is quiet, `on_tick` (a notebook's live curves) is called this often
RANK_PREFIX = re.compile(r"^\[[A-Za-z_]*\d+\]:")  # torchrun's "[default0]:" before each teed line


@dataclass(frozen=True)
class Processes:
    """Where a row trains: ``gpus`` processes on each of ``nodes`` nodes."""

    gpus: int = 1
    nodes: int = 1
    rdzv_endpoint: str | None = None
    cuda: bool = False

    @property
    def world(self) -> int:
        return self.gpus * self.nodes


def visible_gpus() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def resolve_processes(gpus: int | None = None, nodes: int = 1, rdzv_endpoint: str | None = None,
                      device: str = "auto", profile: str = "paper") -> Processes:
    """The processes a row asks for, checked before anything trains (one-line errors).

    ``gpus`` per node; None: every visible GPU in the paper profile, one process in the smoke
    profile or without CUDA. On a CPU device ``gpus`` counts gloo processes (module docstring).
    """
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise ValueError(f"nodes must be a whole number >= 1, got {nodes!r}")
    if nodes > 1 and not rdzv_endpoint:
        raise ValueError(f"nodes={nodes}: a multi-node run needs rdzv_endpoint='HOST:PORT' (a host every node "
                         "can reach, e.g. the first node's name and a free port)")
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    visible = visible_gpus()
    if gpus is None:
        gpus = max(1, visible) if cuda and profile != "smoke" else 1
    if isinstance(gpus, bool) or not isinstance(gpus, int) or gpus < 1:
        raise ValueError(f"gpus must be None (every visible GPU) or a whole number >= 1, got {gpus!r}")
    if cuda and gpus > visible:
        shown = os.environ.get("CUDA_VISIBLE_DEVICES")
        raise ValueError(f"gpus={gpus}: only {visible} GPU(s) visible on this machine"
                         + (f" (CUDA_VISIBLE_DEVICES={shown})" if shown is not None else ""))
    if not cuda and gpus > usable_cpus():
        raise ValueError(f"gpus={gpus} on device={device!r} means {gpus} gloo processes, more than the "
                         f"{usable_cpus()} CPUs this process may use")
    return Processes(gpus, nodes, rdzv_endpoint, cuda)


def set_arguments(cfg: Config) -> list[str]:
    """``--set KEY=VALUE`` pairs that turn ``load_config(cfg.name, cfg.profile)`` into ``cfg``
    (every field that differs; dict fields whole), checked by a round trip."""
    base = load_config(cfg.name, cfg.profile).to_dict()
    ours = cfg.to_dict()
    pairs = [f"{section}.{key}={value!r}" for section, fields in ours.items() if isinstance(fields, dict)
             for key, value in fields.items() if base[section][key] != value]
    if load_config(cfg.name, cfg.profile, pairs).to_dict() != ours:  # e.g. a value repr() cannot carry
        raise ValueError(f"{cfg.name}: its config cannot be passed to `pna train` as --set pairs: {pairs}")
    return pairs


def train_command(cfg: Config, procs: Processes, run_dir: Path, results: Path | None, wait: bool = False,
                  tensorboard: bool = False) -> list[str]:
    """The command that trains ``cfg`` on ``procs``: ``python -m pna train`` for one process,
    torchrun's for more (module docstring)."""
    train = ["-m", "pna", "train", "--config", cfg.name, "--profile", cfg.profile, "--out", str(run_dir)]
    train += [] if results is None else ["--results-dir", str(results)]
    train += ["--wait"] if wait else []
    train += ["--tensorboard"] if tensorboard else []
    sets = set_arguments(cfg)
    train += ["--set", *sets] if sets else []
    if procs.world == 1:
        return [sys.executable, *train]
    runner = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={procs.gpus}"]
    if procs.nodes > 1:
        runner += [f"--nnodes={procs.nodes}", "--rdzv-backend=c10d", f"--rdzv-endpoint={procs.rdzv_endpoint}",
                   f"--rdzv-id={config_hash(cfg)[:10]}"]
    else:
        runner += ["--standalone"]
    return runner + [f"--log-dir={run_dir / 'ranks'}", "--tee=3", "--local-ranks-filter=0", *train]


def child_environment(procs: Processes) -> dict:
    """The launched processes' environment: this checkout's ``pna`` first on the path, progress as
    lines, unbuffered output, the shutdown grace, and CPU threads shared between the processes."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(PNA_PROGRESS="lines", PNA_PROGRESS_LINES=str(PROGRESS_LINES), PYTHONUNBUFFERED="1",
               TORCH_ELASTIC_SHUTDOWN_TIMEOUT=str(SHUTDOWN_S))
    if "OMP_NUM_THREADS" not in env:
        env["OMP_NUM_THREADS"] = str(max(1, usable_cpus() // procs.gpus))
    return env


class LaunchedRun:
    """One row trained by another process (:func:`train_command`): start, stop, and its outcome."""

    def __init__(self, cfg: Config, procs: Processes, results: str | Path | None = None):
        self.cfg, self.procs = cfg, procs
        self.hash = config_hash(cfg)
        self.run = RunDir(default_run_dir(cfg.model.name, cfg.profile, self.hash))
        self.results = None if results is None else Path(results)
        self.process: subprocess.Popen | None = None
        self.tail: deque[str] = deque(maxlen=ERROR_LINES)
        self.log_start, self.started = 0, 0.0
        self.lines: queue.Queue[str | None] = queue.Queue()

    def start(self, stream: bool, wait: bool = False, tensorboard: bool = False) -> subprocess.Popen:
        """Start the training process(es); ``stream``: their output is read by :meth:`follow`, else
        it goes where this process's goes (a job's log); ``wait``: for a run folder another process trains."""
        self.log_start = len(read_text(self.run.log, "run log").splitlines()) if self.run.log.is_file() else 0
        self.started = time.time() - 1  # rank logs of this launch (file times have coarse resolution)
        pipe = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1) if stream else {}
        command = train_command(self.cfg, self.procs, self.run.path, self.results, wait, tensorboard)
        self.process = subprocess.Popen(command, env=child_environment(self.procs), **pipe)
        if stream:  # a reader thread, so that the notebook's side can act while the process is quiet
            threading.Thread(target=self._read, daemon=True, name=f"output of {self.cfg.name}").start()
        return self.process

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def follow(self, on_tick=None) -> int:
        """Print the process's output line by line until it ends, calling ``on_tick`` (if given) after
        each line and every :data:`TICK_S` s of silence; returns its exit status."""
        while True:
            try:
                line = self.lines.get(timeout=TICK_S)
            except queue.Empty:
                line = ""
            if line is None:
                break
            if line:
                line = RANK_PREFIX.sub("", line.rstrip("\n"))
                self.tail.append(line)
                print(line, flush=True)
            if on_tick is not None:
                on_tick()
        return self.process.wait()

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Ask the training process(es) to save their state and stop (torchrun passes it on)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)

    def interrupted_at(self) -> dict | None:
        """The 'interrupted' log entry this launch wrote (a signal stopped it with last.pt saved)."""
        if not self.run.log.is_file():
            return None
        entries = [json.loads(x) for x in read_text(self.run.log, "run log").splitlines()[self.log_start:] if x.strip()]
        stops = [e for e in entries if e.get("type") == "interrupted"]
        return stops[-1] if stops else None

    def record(self) -> dict | None:
        """done.json of this config's finished run (None: not finished, or another config's)."""
        return self.run.record() if self.run.state(self.hash) == "finished" else None

    def failure(self, status: int) -> RuntimeError:
        """The error of a run that neither finished nor stopped on a signal: the failing rank's last lines."""
        lines, where = self._rank_error()
        quoted = " | ".join(lines or list(self.tail)[-ERROR_LINES:]) or "no output"
        return RuntimeError(f"{self.cfg.name} ({self.procs.world} process(es)) failed with exit status {status}"
                            f"{where}: {quoted}")

    def _rank_error(self) -> tuple[list[str], str]:
        """The last lines of the rank that failed first: its stderr log of this launch with our
        one-line error (else any error line) that was written to last, earliest."""
        logs = [p for p in (self.run.path / "ranks").glob("**/stderr.log") if p.stat().st_mtime >= self.started]
        for mark in ("pna train: error:", "error"):
            for log in sorted(logs, key=lambda p: p.stat().st_mtime):
                lines = [x.strip() for x in log.read_text(errors="replace").splitlines() if x.strip()]
                errors = [i for i, x in enumerate(lines) if mark in x.lower()]
                if errors:
                    last = errors[-1]
                    return lines[max(0, last - ERROR_LINES + 1):last + 1], f" on rank {log.parent.name} (log: {log})"
        return [], ""


def launched_result(launched: LaunchedRun, status: int) -> RunResult | Exception:
    """The :class:`~pna.engine.train.RunResult` of a launched run that ended with ``status``, or the
    error that says why there is none (a signal: :class:`TrainingInterrupted`; else the failing rank)."""
    record = launched.record()
    path = result_path(launched.cfg.table, launched.cfg.row, launched.cfg.profile, launched.results or results_dir())
    if status == 0 and record is not None and path.is_file() and \
            read_json(path, "results JSON").get("config_hash") == launched.hash:
        return RunResult(launched.run.path, launched.cfg, launched.hash, record["metrics"], record, path, reused=False)
    stop = launched.interrupted_at()
    if stop is not None:
        return TrainingInterrupted(launched.cfg.name, stop["iter"], launched.run.last, stop.get("signal"))
    if status in (EXIT_INTERRUPTED, EXIT_SIGINT):  # stopped before its loop (building, waiting for the lock)
        saved = launched.run.last if launched.run.last.is_file() else None
        return TrainingInterrupted(launched.cfg.name, None, saved, "SIGINT" if status == EXIT_SIGINT else "SIGTERM")
    return launched.failure(status)


def launch(cfg: Config, procs: Processes, results: str | Path | None = None, wait: bool = False,
           tensorboard: bool = False, on_tick=None) -> RunResult:
    """Train ``cfg`` on ``procs`` in processes of its own, streaming rank 0's output; returns its
    RunResult. SIGTERM / SIGUSR1 / a kernel interrupt meanwhile stop the run with its state saved
    (then :class:`TrainingInterrupted`, or KeyboardInterrupt, is raised). A run folder another
    process trains: :class:`RunLocked` at once, or with ``wait`` the launched command waits for it.
    ``tensorboard``: ``pna train --tensorboard``; ``on_tick``: called while it runs (:meth:`LaunchedRun.follow`)."""
    launched = LaunchedRun(cfg, procs, results)
    holder = launched.run.live_holder()
    if holder is not None and not wait:
        raise RunLocked(launched.run.path, holder)
    if holder is None and launched.record() is not None:  # finished before: load it here, nothing to launch
        return train(cfg, results_dir=results)
    print(f"{cfg.name} ({cfg.profile}): {procs.gpus} process(es) x {procs.nodes} node(s) through "
          f"{'torchrun' if procs.world > 1 else 'pna train'}, in {launched.run.path}", flush=True)
    launched.start(stream=True, wait=wait, tensorboard=tensorboard)
    interrupted = False
    with StopSignals(on_signal=launched.stop):
        while True:
            try:
                status = launched.follow(on_tick)
                break
            except KeyboardInterrupt:  # the kernel's interrupt: let the ranks save, then stop
                interrupted = True
                launched.stop()
    outcome = launched_result(launched, status)
    if interrupted:
        raise KeyboardInterrupt(str(outcome))
    if isinstance(outcome, Exception):
        raise outcome
    return outcome
