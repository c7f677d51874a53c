"""Reading pickled weight and checkpoint files without running code stored in them.

A pickle names functions and classes ("globals") that the unpickler looks up and calls; a crafted
file names ``os.system`` and runs it. Every file pna reads is therefore unpickled by a loader that
looks globals up in an allow-list and refuses the first one not on it:

* ``torch.save`` files (zip, and the legacy pre-1.6 format): ``torch.load(weights_only=True)``,
  torch's own restricted unpickler, with the numpy types of :data:`NUMPY_GLOBALS` allow-listed
  for the call (``torch.serialization.safe_globals``): checkpoints written before pna stored its
  numpy RNG state as a list hold an ndarray.
* plain pickles (Detectron2's ``R-52.pkl``: ``{"model": {name: ndarray}, "__author__": ...}``,
  written with protocol 2 by Python 2-era tools, read with ``encoding="latin1"`` as Detectron2
  does): :class:`WeightsUnpickler`, a ``pickle.Unpickler`` whose ``find_class`` answers only from
  :data:`PICKLE_GLOBALS` (dicts, lists, tuples, strings, numbers, numpy arrays and scalars).
  This is the "Restricting Globals" pattern of Python's ``pickle`` documentation. No library does
  this for plain pickles: torch's restricted unpickler reads only ``torch.save``'s container, and
  numpy's ``allow_pickle=False`` refuses pickles outright.

A refused file raises :class:`UnsafeFileError` (one line: the file, the refused global, the way
out), unless the user trusts that file (:mod:`pna.files.trust`): then it is read by the
unrestricted loader (``torch.load(weights_only=False)`` / ``pickle.Unpickler``) with a warning.
safetensors files hold no pickle; their readers do not come here.

Example::

    >>> import pickle, tempfile, numpy as np
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "R-52.pkl").write_bytes(pickle.dumps({"model": {"w": np.ones(2, np.float32)}}, protocol=2))
    >>> load_file(folder / "R-52.pkl")["model"]["w"]
    array([1., 1.], dtype=float32)
    >>> _ = (folder / "bad.pkl").write_bytes(pickle.dumps(print, protocol=2))
    >>> load_file(folder / "bad.pkl")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    pna.files.safe_load.UnsafeFileError: .../bad.pkl: refused to unpickle __builtin__.print: not a weights type ...
"""
from __future__ import annotations

import collections
import importlib
import pickle
import re
import warnings
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from pna.files.trust import TRUST_ENV, is_trusted

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default container since torch 1.6 is a zip archive
LEGACY_TORCH_MAGIC = torch.serialization.MAGIC_NUMBER  # the first pickle of a legacy torch.save file
PICKLE_ENCODING = "latin1"  # Python 2 str (numpy's raw array bytes) read back as bytes-in-str


class UnsafeFileError(ValueError):
    """A file that needs a global outside the allow-list to unpickle (and that the user does not trust)."""


class RefusedGlobal(pickle.UnpicklingError):
    """Raised inside unpickling: ``name`` is the first global not on the allow-list."""

    def __init__(self, name: str):
        super().__init__(f"{name} is not on the allow-list")
        self.name = name


def _numpy_module(name: str):
    """numpy's private module ``name`` ('multiarray', 'numeric') under numpy 2 (``numpy._core``) or 1."""
    try:
        return importlib.import_module(f"numpy._core.{name}")
    except ImportError:  # numpy < 2
        return importlib.import_module(f"numpy.core.{name}")


def _latin1_encode(text: str, encoding: str = PICKLE_ENCODING) -> bytes:
    """``_codecs.encode`` as pickles of ``bytes`` with protocol < 3 use it (latin1 only, no other codec)."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise RefusedGlobal(f"_codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _numpy_globals() -> dict[str, Any]:
    """What numpy arrays and scalars need to unpickle, under every name numpy 1 and 2 write them."""
    multiarray, numeric = _numpy_module("multiarray"), _numpy_module("numeric")
    found: dict[str, Any] = {"numpy.ndarray": np.ndarray, "numpy.dtype": np.dtype}
    for package in ("numpy.core", "numpy._core"):  # numpy 1 files say numpy.core, numpy 2 files numpy._core
        found[f"{package}.multiarray._reconstruct"] = multiarray._reconstruct  # an empty ndarray, filled by BUILD
        found[f"{package}.multiarray.scalar"] = multiarray.scalar  # a numpy scalar from its dtype and bytes
        found[f"{package}.numeric._frombuffer"] = numeric._frombuffer  # protocol 5: an ndarray over a buffer
    return found


NUMPY_GLOBALS = _numpy_globals()
# numpy dtypes of weights (no object dtype): torch's unpickler sets a dtype's state only when its class is allowed.
NUMPY_DTYPE_CLASSES = tuple(type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDG")

_BUILTINS = {"set": set, "frozenset": frozenset, "complex": complex, "bytearray": bytearray,
             "slice": slice, "range": range}
PICKLE_GLOBALS: dict[str, Any] = {
    **NUMPY_GLOBALS,
    "collections.OrderedDict": collections.OrderedDict,
    "_codecs.encode": _latin1_encode,
    **{f"{module}.{name}": value for module in ("builtins", "__builtin__") for name, value in _BUILTINS.items()},
}


class WeightsUnpickler(pickle.Unpickler):
    """``pickle.Unpickler`` that builds only dicts, lists, tuples, strings, numbers, sets and numpy
    arrays / scalars: every global is looked up in :data:`PICKLE_GLOBALS` (never imported)."""

    def find_class(self, module: str, name: str) -> Any:
        # Called for GLOBAL, STACK_GLOBAL, INST, OBJ and the extension registry alike, with the names as
        # written in the file (Python 2's are not mapped yet: __builtin__ is listed beside builtins).
        try:
            return PICKLE_GLOBALS[f"{module}.{name}"]
        except KeyError:
            raise RefusedGlobal(f"{module}.{name}") from None


def _torch_safe_globals() -> list:
    """numpy's globals for torch's restricted unpickler, named as the file names them."""
    return [(value, name) for name, value in NUMPY_GLOBALS.items()] + list(NUMPY_DTYPE_CLASSES)


def _refused_by_torch(error: pickle.UnpicklingError) -> str | None:
    """The global torch's restricted unpickler refused (None: the file is damaged, not refused)."""
    text = str(error)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return found.group(1)
    reason = re.search(r"(Trying to call reduce for unrecognized function [^\s]+|Can only create new object "
                       r"for [^.]+ but got [^\s]+|Can only build [^.]+)", text)
    return reason.group(1) if reason else None


def _torch_load(path: Path, map_location: Any) -> Any:
    with torch.serialization.safe_globals(_torch_safe_globals()):
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as error:
            refused = _refused_by_torch(error)
            if refused is None:
                raise
            raise RefusedGlobal(refused) from None


def _is_zip(f: BinaryIO) -> bool:
    start = f.read(len(ZIP_MAGIC))
    f.seek(0)
    return start == ZIP_MAGIC


def _is_legacy_torch(first: object) -> bool:
    return type(first) is int and first == LEGACY_TORCH_MAGIC


def _read(path: Path, map_location: Any, restricted: bool) -> Any:
    """The object stored in ``path``: a torch.save file through torch.load, any other file as one pickle."""
    with open(path, "rb") as f:
        if not _is_zip(f):
            unpickler = WeightsUnpickler if restricted else pickle.Unpickler
            first = unpickler(f, encoding=PICKLE_ENCODING).load()
            if not _is_legacy_torch(first):
                return first
    if restricted:
        return _torch_load(path, map_location)
    # Reached only for a file the user trusts by name (load_file): the opt-in this module exists for.
    return torch.load(path, map_location=map_location, weights_only=False)


def refusal(path: str | Path, name: str) -> UnsafeFileError:
    """The one-line error for ``path`` whose unpickling needs ``name``, with the way out."""
    return UnsafeFileError(
        f"{path}: refused to unpickle {name}: not a weights type (unpickling it could run code stored in the "
        f"file); if you trust this file, pass --trust-file {path} (notebooks: trust_files=[...]; Python: "
        f"pna.files.trusting([...]); or the {TRUST_ENV} environment variable)")


def load_file(path: str | Path, map_location: Any = "cpu") -> Any:
    """The object pickled in ``path`` (a ``torch.save`` file or a plain pickle), read without running code.

    Raises :class:`UnsafeFileError` when the file needs a global outside the allow-list, unless the
    user trusts ``path`` (:func:`pna.files.trust.trusting`, ``--trust-file``): then it is read with the
    unrestricted loader and a warning. A damaged file raises what torch / pickle raise (EOFError,
    pickle.UnpicklingError, RuntimeError), for the caller to word.
    """
    path = Path(path)
    try:
        return _read(path, map_location, restricted=True)
    except RefusedGlobal as refused:
        if not is_trusted(path):
            raise refusal(path, refused.name) from None
        name = refused.name
    warnings.warn(f"{path}: needs {name}, which is not a weights type; reading it with the unrestricted "
                  f"unpickler because you trust this file (--trust-file / trust_files / {TRUST_ENV}): "
                  "code stored in it runs", UserWarning, stacklevel=2)
    return _read(path, map_location, restricted=False)
