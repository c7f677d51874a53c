"""Atomic checkpoints that hold everything a resumed run needs to continue bit for bit.

A checkpoint is written to a temporary file in the same folder and renamed over the target, so an
interrupted write never leaves a truncated checkpoint behind.

Example::

    >>> import tempfile, torch, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "last.pt"
    >>> atomic_save({"iteration": 3}, path)
    >>> read_torch_file(path)["iteration"]
    3
"""
from __future__ import annotations

import json
import os
import pickle
import random
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from pna.files import DamagedFileError, load_file


def _atomic_write(path: str | Path, mode: str, write: Callable[[Any], None]) -> None:
    """Write through ``write(file)`` to a temporary sibling, fsync, then os.replace onto `path`,
    so a reader (or a resumed run) never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_save(obj: Any, path: str | Path) -> None:
    """torch.save `obj` atomically onto `path`."""
    _atomic_write(path, "wb", lambda f: torch.save(obj, f))


def atomic_write_text(text: str, path: str | Path) -> None:
    """Write text atomically onto `path`."""
    _atomic_write(path, "w", lambda f: f.write(text))


def atomic_write_json(data: Any, path: str | Path) -> None:
    atomic_write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", path)


def rng_state() -> dict:
    """The states of every random generator the training loop draws from, in types that torch's
    weights-only unpickler reads: tensors, and tuples / lists of ints and floats (numpy's key array
    is stored as a list of ints).

    >>> state = rng_state(); first = np.random.rand(); set_rng_state(state)
    >>> np.random.rand() == first, type(state["numpy"][1])
    (True, <class 'list'>)
    """
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "numpy": (name, keys.tolist(), pos, has_gauss, cached_gaussian),
             "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state` (also an older checkpoint's, whose numpy keys are an ndarray)."""
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), *rest))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read (truncated, not a torch file) or is not a pna one."""


def read_torch_file(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """The object in a ``torch.save`` file, read without running code stored in it
    (:func:`pna.files.load_file`), with errors that name the file and what to do about it.

    A file that needs more than tensors, numpy arrays and plain types raises
    :class:`pna.files.UnsafeFileError` unless the user trusts it (``--trust-file``). A truncated file (an interrupted copy or download, a full disk) gives torch's "PytorchStreamReader
    failed reading zip archive" without the file's name; this raises :class:`CheckpointError` instead.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return load_file(path, map_location)
    except (DamagedFileError, RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile) as error:
        if isinstance(error, RuntimeError) and "zip archive" not in str(error) and "magic number" not in str(error):
            raise  # e.g. a CUDA tensor loaded without a GPU: torch's own message says what to do
        size = path.stat().st_size
        if isinstance(error, DamagedFileError):  # pna.files words the cause; the remedy is said here
            reason = error.cause
        else:
            reason = str(error).strip().split(". ")[0].splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"cannot read checkpoint {path} ({size} bytes): it is truncated or not a torch "
                              f"file ({reason}); {_remedy(path)}") from error


def _remedy(path: Path) -> str:
    """What to do about an unreadable checkpoint, by where it lies."""
    if path.name == "final.pt" and (path.parent / "done.json").is_file():
        return (f"the finished run in {path.parent} is damaged: train its config again with --overwrite "
                "(overwrite=True), or delete that folder")
    if path.name == "last.pt":
        return (f"the interrupted run in {path.parent} cannot resume from it: delete it and train again "
                "with --overwrite (overwrite=True) to restart the run")
    return "if it was copied or downloaded, copy it again; if pna.engine.train wrote it, train again"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by the trainer; FileNotFoundError / CheckpointError (a ValueError)
    when it is missing, unreadable or not one."""
    data = read_torch_file(path, map_location)
    if not isinstance(data, dict) or "model" not in data or "config" not in data:
        raise CheckpointError(f"{path} is not a pna training checkpoint (expected keys 'model' and 'config')")
    return data
