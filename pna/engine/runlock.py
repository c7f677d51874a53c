"""One run folder, one writer: the lock a training run holds in its run folder.

``<run>/lock.json`` is created by the process that trains the run (rank 0 under torchrun) with
``O_CREAT | O_EXCL`` (an exclusive create, which NFS v3 and later honour across hosts) and removed
when that process ends, however it ends (finished, error, signal)::

    {"pid": 4242, "host": "node17", "started": "2026-12-07T03:05:26Z", "heartbeat": "2026-12-07T03:35:26Z",
     "started_s": 1796612726.0, "heartbeat_s": 1796614526.0, "command": "pna train --config voc/...",
     "slurm_job_id": "81234", "slurm_restart": 0, "process_start": "1234567", "pid_ns": "pid:[4026531836]",
     "token": "9f0c..."}

The holder rewrites the heartbeat every :data:`HEARTBEAT_S` seconds (a thread; atomically, by
renaming a sibling file over the lock). A lock is **stale**, and is taken over with a line naming
the old holder, when

* it was written on this host (and pid namespace: a container sharing the host name counts as another
  host) and its process is gone (or its pid now belongs to another process: the start time differs,
  ``process_start``; a zombie counts as gone);
* this is the SLURM job that wrote it, requeued (same ``SLURM_JOB_ID``, higher ``SLURM_RESTART_COUNT``);
* it was written on another host and its heartbeat is older than :data:`STALE_AFTER_S`.

Otherwise it is **live**: a second training of that folder refuses with one line naming the folder
and the holder (:class:`RunLocked`), or waits (``pna train --wait``). :func:`lock_holder` and
:func:`stale_reason` are the readers for anyone who lists runs.

Libraries: ``filelock``'s SoftFileLock and ``fasteners`` lock with a bare file or ``fcntl`` (not
reliable on NFS); neither records a holder to name, a heartbeat, or a SLURM requeue, hence this module.

Example::

    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> with RunLock(folder):
    ...     holder = lock_holder(folder)
    ...     holder["pid"] == os.getpid(), stale_reason(holder)
    (True, None)
    >>> lock_holder(folder) is None
    True
"""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Callable

LOCK_NAME = "lock.json"
# The holder rewrites its heartbeat this often; a lock of another host is stale after STALE_AFTER_S
# without one: 20 missed beats, room for NFS attribute caching (up to 60 s by default), clock skew
# between nodes and a process paused by the scheduler. A lock of this host needs no wait: its pid says.
HEARTBEAT_S = 30.0
STALE_AFTER_S = 600.0
WAIT_POLL_S = 2.0        # how often a waiting training looks again
COMMAND_CHARS = 500       # of the holder's command recorded in the lock
SHOWN_COMMAND_CHARS = 120  # of it in a refusal's one line
_READ_TRIES = 5          # a lock read while its writer is between create and write: look again
_held: set[str] = set()  # tokens of the locks this process holds


def _iso(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _process_start(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks after boot, /proc/<pid>/stat field 22), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_namespace() -> str | None:
    """This process's pid namespace: containers that share a host name do not share process ids."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _process_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return _process_state(pid) != "Z"  # a zombie has ended; only its parent has not collected it


def lock_path(run_path: str | Path) -> Path:
    return Path(run_path) / LOCK_NAME


def lock_holder(run_path: str | Path) -> dict | None:
    """The lock record of the run folder ``run_path`` (None: nobody holds it). A lock file that
    stays unreadable is returned as ``{"unreadable": True, "heartbeat_s": <its mtime>, ...}``."""
    path = lock_path(run_path)
    for attempt in range(_READ_TRIES):
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            return None
        try:
            holder = json.loads(text)
            if isinstance(holder, dict) and "token" in holder:
                return {**holder, "path": str(path)}
        except json.JSONDecodeError:
            pass
        time.sleep(0.05 * (attempt + 1))
    return {"unreadable": True, "path": str(path), "heartbeat_s": mtime, "started_s": mtime}


def stale_reason(holder: dict, now: float | None = None) -> str | None:
    """Why the lock ``holder`` (from :func:`lock_holder`) is stale, or None while it is live (module docstring)."""
    now = time.time() if now is None else now
    silent = now - float(holder.get("heartbeat_s") or 0)
    if holder.get("unreadable"):
        return f"unreadable lock file, unchanged for {silent:.0f} s" if silent > STALE_AFTER_S else None
    job = os.environ.get("SLURM_JOB_ID")
    if job and job == holder.get("slurm_job_id") and \
            int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0) > int(holder.get("slurm_restart") or 0):
        return f"SLURM job {job} was requeued; this is its next start"
    same_namespace = None in (holder.get("pid_ns"), _pid_namespace()) or holder.get("pid_ns") == _pid_namespace()
    if holder.get("host") == socket.gethostname() and same_namespace:
        pid = int(holder.get("pid", -1))
        if pid == os.getpid():
            return None if holder.get("token") in _held else "left by this process, which no longer holds it"
        if not _running(pid):
            return f"process {pid} is no longer running"
        start = holder.get("process_start")
        if start is not None and _process_start(pid) not in (None, start):
            return f"process {pid} ended; its id now belongs to another process"
        return None
    if silent > STALE_AFTER_S:
        return (f"no heartbeat from {holder.get('host')} for {silent:.0f} s (a lock is stale after "
                f"{STALE_AFTER_S:.0f} s)")
    return None


def describe_holder(holder: dict) -> str:
    """``pid 4242@node17 since 2026-12-07 03:05:26 UTC (pna train --config ...)``: who holds a lock."""
    if holder.get("unreadable"):
        return f"an unknown process (unreadable lock {holder['path']}, last changed {_iso(holder['heartbeat_s'])})"
    since = _iso(float(holder.get("started_s", 0))).replace("T", " ").replace("Z", " UTC")
    job = f", SLURM job {holder['slurm_job_id']}" if holder.get("slurm_job_id") else ""
    command = str(holder.get("command", "?"))
    command = command if len(command) <= SHOWN_COMMAND_CHARS else command[:SHOWN_COMMAND_CHARS] + " ..."
    return f"pid {holder.get('pid')}@{holder.get('host')} since {since}{job} ({command})"


class RunLocked(FileExistsError):
    """A live lock holds the run folder: one line naming the folder and the holder."""

    def __init__(self, run_path: str | Path, holder: dict):
        self.run_path, self.holder = Path(run_path), holder
        super().__init__(f"{self.run_path} is being trained by {describe_holder(holder)}; pass --wait (wait=True) "
                         "to wait for it and then use its result, or choose another --out")


def _command() -> str:
    argv = list(sys.argv)
    if argv and argv[0].endswith(("__main__.py", "/pna")):
        argv[0] = "pna"
    return " ".join(argv)[:COMMAND_CHARS]


class RunLock:
    """The lock of one run folder, held from :meth:`acquire` to :meth:`release` (or ``with``)."""

    def __init__(self, run_path: str | Path, say: Callable[[str], None] = print):
        self.run_path, self.path, self.say = Path(run_path), lock_path(run_path), say
        self.token = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _record(self, started: float) -> dict:
        now = time.time()
        return {"pid": os.getpid(), "host": socket.gethostname(), "started": _iso(started), "heartbeat": _iso(now),
                "started_s": started, "heartbeat_s": now, "command": _command(),
                "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
                "slurm_restart": int(os.environ.get("SLURM_RESTART_COUNT", "0") or 0),
                "process_start": _process_start(os.getpid()), "pid_ns": _pid_namespace(), "token": self.token}

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        self.started = time.time()
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(self._record(self.started)) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return True

    def acquire(self) -> "RunLock":
        """Take the lock (taking over a stale one, with a line naming its holder); :class:`RunLocked` if it is live."""
        for _ in range(_READ_TRIES):
            if self._create():
                _held.add(self.token)
                self._thread = threading.Thread(target=self._beat, name=f"heartbeat {self.path}", daemon=True)
                self._thread.start()
                return self
            holder = lock_holder(self.run_path)
            if holder is None:
                continue  # released in between
            reason = stale_reason(holder)
            if reason is None:
                raise RunLocked(self.run_path, holder)
            self.say(f"{self.run_path}: taking over the stale lock of {describe_holder(holder)}: {reason}")
            self._set_aside(holder)
        raise RunLocked(self.run_path, lock_holder(self.run_path) or {"unreadable": True, "path": str(self.path),
                                                                       "heartbeat_s": time.time()})

    def _set_aside(self, judged: dict) -> None:
        """Remove the stale lock ``judged``, unless another process replaced it meanwhile: the lock is
        renamed aside (one process wins the rename), checked, and put back if it is not the one judged."""
        aside = self.path.with_name(f".{LOCK_NAME}.{self.token}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        try:
            moved = json.loads(aside.read_text(encoding="utf-8", errors="replace") or "{}")
        except json.JSONDecodeError:
            moved = {}
        if moved.get("token") != judged.get("token") and not judged.get("unreadable"):
            try:
                os.link(aside, self.path)  # a fresh lock taken in between: give it back
            except OSError:
                pass
        aside.unlink(missing_ok=True)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                current = lock_holder(self.run_path)
                if current is None or current.get("token") != self.token:
                    self.say(f"{self.run_path}: this run's lock was taken over by "
                             f"{describe_holder(current) if current else 'nobody (removed)'}; heartbeat stopped")
                    return
                tmp = self.path.with_name(f".{LOCK_NAME}.{self.token}.beat")
                tmp.write_text(json.dumps(self._record(self.started)) + "\n")
                os.replace(tmp, self.path)
            except OSError:
                pass  # a file system hiccup: the next beat tries again

    def release(self) -> None:
        """Stop the heartbeat and remove the lock if it is still this holder's."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.token in _held:
            _held.discard(self.token)
            current = lock_holder(self.run_path)
            if current is not None and current.get("token") == self.token:
                self.path.unlink(missing_ok=True)

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
