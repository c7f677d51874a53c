"""Rows, or whole notebooks, as cluster jobs through submitit: SLURM, or submitit's local executor.

``pna submit`` (:mod:`pna.cli.submit`) and the notebooks' ``executor`` parameter come here::

    pna submit --rows cityscapes/fpn_r52_pna cityscapes/fpn_r103_pna --profile paper \\
        --set data.root=/data/cityscapes --weights /weights --executor slurm --gpus 4 --time 600 --partition gpu
    pna submit --notebook notebooks/03_cityscapes.ipynb -p profile paper -p data_root /data/cityscapes \\
        --executor slurm --gpus 4 --time 1440

Each row is one job (:class:`RowJob`: ``gpus`` GPUs on each of ``nodes`` nodes for ``time`` minutes in
``partition``) that trains it as a notebook would on that machine (:mod:`pna.engine.launch`:
``torchrun`` for more than one process, rendezvous at the job's first node). The job ids and log files
are printed. A row whose run is already finished (``runs/``, by config hash) is not submitted, and a
job that finds its run finished loads it: a finished row is never trained twice. A job whose run
folder another process is training (a notebook, another job: its lock, :mod:`pna.engine.runlock`)
waits for it and then uses its run; a requeued job (same SLURM job id) takes over its own lock.

Preemption and time limits follow submitit's checkpointing protocol: submitit delivers USR2 to the job
(SLURM sends it :data:`SIGNAL_DELAY_S` before the time limit, or at preemption where the cluster is
set up so); :meth:`RowJob.checkpoint` then asks the trainer to stop (SIGTERM: it ends its step and
writes ``last.pt``), waits for it, and returns the same job for resubmission; submitit requeues it and
the requeued job resumes from ``last.pt``. A trainer stopped by a signal sent to it directly (SLURM's
SIGTERM at preemption) exits with status 75; the job then asks submitit to requeue the same way.

``executor="slurm"`` where no SLURM is reachable (no ``sbatch``/``sinfo``) is a one-line error before
anything is submitted. Nothing schedules jobs here: SLURM (or submitit's local executor) does.

Example::

    >>> job_launcher(None) is None
    True
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import submitit

from pna.configs import Config, config_hash
from pna.engine.interrupts import TrainingInterrupted
from pna.engine.launch import SHUTDOWN_S, LaunchedRun, launched_result, resolve_processes
from pna.engine.rundir import RunDir, default_run_dir
from pna.engine.runlock import describe_holder
from pna.engine.train import RunResult, train
from pna.paths import REPO_ROOT, read_json, results_dir

EXECUTORS = ("slurm", "local")
# SLURM sends USR2 this many seconds before the time limit (sbatch --signal): time for the job to stop
# the trainer (at most STOP_WAIT_S, which includes torchrun's SHUTDOWN_S for its ranks) and requeue.
SIGNAL_DELAY_S = 240
STOP_WAIT_S = SHUTDOWN_S + 60
POLL_S = 1.0              # how often a job looks whether its trainer has ended
RDZV_PORT = 29500         # torchrun's rendezvous port on a multi-node job's first node (torch's default)


def check_executor(executor: str | None) -> None:
    """A one-line error unless ``executor`` is None, "local", or "slurm" with SLURM reachable here."""
    if executor is None or executor == "local":
        return
    if executor not in EXECUTORS:
        raise ValueError(f"executor must be None, 'slurm' or 'local', got {executor!r}")
    if shutil.which("sbatch") is None:
        raise ValueError("executor='slurm': no SLURM here (sbatch is not on PATH); submit from a SLURM login node, "
                         "or use executor='local'")
    try:
        subprocess.run(["sinfo", "--noheader", "--format=%P"], check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as error:
        raise ValueError(f"executor='slurm': SLURM does not answer (sinfo: {error})") from None


def make_executor(executor: str, folder: str | Path, gpus: int, nodes: int, time_min: int,
                  partition: str | None, name: str, cuda: bool = True) -> submitit.AutoExecutor:
    """A submitit executor for one job of ``nodes`` x ``gpus`` GPUs; jobs import this checkout's ``pna``."""
    check_executor(executor)
    path = f"export PYTHONPATH={shlex.quote(str(REPO_ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}"
    ex = submitit.AutoExecutor(folder=str(folder), cluster=executor)
    ex.update_parameters(name=name, timeout_min=int(time_min), nodes=nodes, tasks_per_node=1,
                         gpus_per_node=gpus if cuda else 0, slurm_partition=partition, slurm_setup=[path],
                         slurm_signal_delay_s=SIGNAL_DELAY_S, local_setup=[path])
    return ex


def _wait_in_handler(pid: int, seconds: float) -> None:
    """Wait for child ``pid`` to end, from a signal handler (os.waitpid: Popen.wait's lock may be held)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG) != (0, 0):
                return
        except ChildProcessError:  # already reaped
            return
        time.sleep(0.2)


def _requeue_me(error: TrainingInterrupted) -> None:
    """Ask submitit to checkpoint and requeue this job (its own signal); raise ``error`` where that
    is not possible (not a submitit job, or not its first task)."""
    if os.environ.get("SUBMITIT_EXECUTOR"):
        os.kill(os.getpid(), getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG))
    raise error


class RowJob(submitit.helpers.Checkpointable):
    """One row trained in a submitit job; ``checkpoint()`` (submitit calls it on USR2) stops the
    trainer with its state saved and returns the same job for resubmission (module docstring)."""

    def __init__(self, cfg: Config, gpus: int | None, nodes: int = 1, results: str | None = None):
        self.cfg, self.gpus, self.nodes, self.results = cfg, gpus, nodes, results
        self._launched: LaunchedRun | None = None

    def __call__(self) -> RunResult:
        endpoint = None
        if self.nodes > 1:
            endpoint = f"{submitit.JobEnvironment().hostnames[0]}:{RDZV_PORT}"
        procs = resolve_processes(self.gpus, self.nodes, endpoint, self.cfg.train.device, self.cfg.profile)
        launched = LaunchedRun(self.cfg, procs, self.results)
        if launched.run.live_holder() is None and launched.record() is not None:
            return train(self.cfg, results_dir=self.results, wait=True)  # finished: loaded, not trained again
        self._launched = launched
        process = launched.start(stream=False, wait=True)  # another process trains it: wait, then use its run
        while (status := process.poll()) is None:
            time.sleep(POLL_S)
        self._launched = None
        outcome = launched_result(launched, status)
        if isinstance(outcome, TrainingInterrupted):
            _requeue_me(outcome)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        launched = self._launched
        if launched is not None and launched.process is not None:
            print(f"{self.cfg.name}: asking the trainer to save its state and stop before the requeue", flush=True)
            launched.stop(signal.SIGTERM)
            _wait_in_handler(launched.process.pid, STOP_WAIT_S)
        return submitit.helpers.DelayedSubmission(RowJob(self.cfg, self.gpus, self.nodes, self.results))


class PendingRow:
    """A submitted row: its job, and its RunResult once the job has ended."""

    def __init__(self, job, cfg: Config):
        self.job, self.cfg = job, cfg

    def result(self) -> RunResult:
        try:
            return self.job.result()
        except submitit.core.utils.UncompletedJobError as error:
            first = str(error).strip().splitlines()[0]
            raise RuntimeError(f"{self.cfg.name}: job {self.job.job_id} did not complete ({first}); "
                               f"log: {self.job.paths.stdout}") from None
        except submitit.core.utils.FailedJobError as error:
            lines = [x for x in str(error).strip().splitlines() if x.strip()]
            raise RuntimeError(f"{self.cfg.name}: job {self.job.job_id} failed: {lines[-1] if lines else ''}; "
                               f"log: {self.job.paths.stderr}") from None


class Finished:
    """A row finished before: nothing submitted, its RunResult at hand."""

    def __init__(self, result: RunResult):
        self._result = result

    def result(self) -> RunResult:
        return self._result


class JobLauncher:
    """Submits rows as jobs (what :func:`pna.analysis.experiments.run_rows` takes as ``launcher``)."""

    def __init__(self, executor: str, partition: str | None = None, time_min: int = 600,
                 folder: str | Path | None = None, results: str | Path | None = None):
        check_executor(executor)
        self.executor, self.partition, self.time_min = executor, partition, time_min
        self.folder = Path(folder) if folder else results_dir() / "jobs"
        self.results = None if results is None else str(results)

    def submit(self, cfg: Config, gpus: int | None = None, nodes: int = 1) -> PendingRow | Finished:
        """Submit ``cfg`` as a job of ``gpus`` GPUs (processes on a CPU device) x ``nodes``; a run
        finished before is loaded instead, and returned as it is. One-line errors before submitting."""
        if self.executor == "slurm" and gpus is None:
            raise ValueError("executor='slurm': give gpus (the GPUs per node to ask SLURM for)")
        if self.executor == "local":  # this machine: checked against what it has
            if nodes != 1:
                raise ValueError(f"executor='local' runs on this machine only: nodes must be 1, got {nodes}")
            gpus = resolve_processes(gpus, 1, None, cfg.train.device, cfg.profile).gpus
        cfg_hash = config_hash(cfg)
        run = RunDir(default_run_dir(cfg.model.name, cfg.profile, cfg_hash))
        holder = run.live_holder()
        if holder is not None:
            print(f"{cfg.name} ({cfg.profile}): {run.path} is being trained by {describe_holder(holder)}; the job "
                  "will wait for it", flush=True)
        elif run.state(cfg_hash) == "finished":
            print(f"{cfg.name} ({cfg.profile}): finished before in {run.path}; not submitted", flush=True)
            return Finished(train(cfg, results_dir=self.results))
        ex = make_executor(self.executor, self.folder, gpus, nodes, self.time_min, self.partition,
                           name=f"pna-{cfg.name.replace('/', '-')}", cuda=cfg.train.device != "cpu")
        job = ex.submit(RowJob(cfg, gpus, nodes, self.results))
        print(f"{cfg.name} ({cfg.profile}): job {job.job_id} ({self.executor}, {gpus} GPU(s) x {nodes} node(s), "
              f"{self.time_min} min); log {job.paths.stdout}", flush=True)
        return PendingRow(job, cfg)


def job_launcher(executor: str | None, partition: str | None = None, time_min: int = 600,
                 folder: str | Path | None = None, results: str | Path | None = None) -> JobLauncher | None:
    """The notebooks' ``executor`` parameter: None trains in the notebook; "slurm" / "local" submit."""
    return None if executor is None else JobLauncher(executor, partition, time_min, folder, results)


class NotebookJob(submitit.helpers.Checkpointable):
    """A whole notebook run by papermill in a job; on USR2 every process under papermill (the kernel,
    torchrun, the ranks) gets SIGTERM (trainers save their state), and the same notebook is
    resubmitted: finished rows are loaded, the interrupted one resumes."""

    def __init__(self, notebook: str, output: str, parameters: dict):
        self.notebook, self.output, self.parameters = notebook, output, parameters
        self._process: subprocess.Popen | None = None

    def __call__(self) -> str:
        command = [sys.executable, "-m", "papermill", self.notebook, self.output, "--cwd",
                   str(Path(self.notebook).resolve().parent)]
        for key, value in self.parameters.items():  # text as text, anything else as JSON (a YAML subset)
            command += ["-p", key, value] if isinstance(value, str) else ["-y", json.dumps({key: value})]
        self._process = subprocess.Popen(command)
        while (status := self._process.poll()) is None:
            time.sleep(POLL_S)
        if status != 0:
            raise RuntimeError(f"papermill {self.notebook} failed with exit status {status}; see {self.output}")
        return self.output

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        if self._process is not None:
            import psutil  # installed with ipykernel, which papermill runs

            for child in psutil.Process(self._process.pid).children(recursive=True):
                child.send_signal(signal.SIGTERM)
            _wait_in_handler(self._process.pid, STOP_WAIT_S)
        return submitit.helpers.DelayedSubmission(NotebookJob(self.notebook, self.output, self.parameters))


def submit_rows(configs: list[Config], executor: str, gpus: int | None = None, nodes: int = 1, time_min: int = 600,
                partition: str | None = None, folder: str | Path | None = None, results: str | Path | None = None,
                wait: bool = False) -> dict[str, PendingRow | Finished | RunResult]:
    """Submit every config as a job (every one checked first); with ``wait``, their RunResults."""
    launcher = JobLauncher(executor, partition, time_min, folder, results)
    pending = {cfg.name: launcher.submit(cfg, gpus, nodes) for cfg in configs}
    return {name: p.result() for name, p in pending.items()} if wait else pending


def submit_notebook(notebook: str | Path, parameters: dict, executor: str, gpus: int | None = None,
                    time_min: int = 600, partition: str | None = None, folder: str | Path | None = None,
                    output: str | Path | None = None):
    """Submit a whole notebook as one job on one node with ``gpus`` GPUs (its rows train there,
    ``gpus`` passed on as the notebook's parameter); returns the submitit job."""
    notebook = Path(notebook).resolve()
    if not notebook.is_file():
        raise FileNotFoundError(f"notebook not found: {notebook}")
    if not isinstance(read_json(notebook, "notebook"), dict):  # binary or not a notebook: said now, not in the job
        raise ValueError(f"notebook {notebook} is not a Jupyter notebook (a JSON object was expected)")
    if executor == "slurm" and gpus is None:
        raise ValueError("executor='slurm': give gpus (the GPUs to ask SLURM for)")
    output = Path(output) if output else results_dir() / "executed" / notebook.name
    output.parent.mkdir(parents=True, exist_ok=True)
    parameters = {**parameters, **({"gpus": gpus} if gpus is not None else {})}
    device = parameters.get("device", "auto")
    folder = Path(folder) if folder else results_dir() / "jobs"
    ex = make_executor(executor, folder, gpus or 0, 1, time_min, partition, name=f"pna-{notebook.stem}",
                       cuda=device != "cpu")
    job = ex.submit(NotebookJob(str(notebook), str(output), parameters))
    print(f"{notebook.name}: job {job.job_id} ({executor}, {gpus or 0} GPU(s), {time_min} min); executed copy "
          f"{output}; log {job.paths.stdout}", flush=True)
    return job
