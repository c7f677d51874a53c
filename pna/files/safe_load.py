"""Reading pickled weight and checkpoint files so that nothing stored in them runs, and nothing they ask for is unbounded.

A pickle names functions and classes ("globals") that the unpickler looks up and calls, and asks
for state to be set on what they return; a crafted file names ``os.system``, sets the state of a
numpy dtype so that numpy reads the file's bytes as pointers, rewrites a function's defaults, or
declares a 3 GB buffer in 86 bytes. :func:`load_file` reads every file through four layers:

1. **torch's unpickler** (``torch.save`` files, zip and legacy): ``torch.load(weights_only=True)``
   decides for torch's own types (tensors, storages, ``torch.Size``, dtypes, ``OrderedDict``) and
   refuses every other global, any call (REDUCE) or object creation (NEWOBJ) of something not
   allow-listed, and BUILD on anything but tensors, parameters, ``OrderedDict`` and allow-listed types.
   It gets numpy's names bound to our validating constructors (below), never numpy's own callables
   or dtype classes, so the only BUILD it applies beyond torch's types is our placeholders'.
2. **our allow-list** (plain pickles such as Detectron2's ``R-52.pkl``, protocol 2, latin1): the
   pure-Python :class:`~pna.files.unpickler.DataUnpickler` answers globals only from its list and
   refuses other globals, REDUCE of anything else, BUILD on anything but the numpy placeholders and
   an ``OrderedDict``'s attributes, NEWOBJ / INST / OBJ, persistent ids and the extension registry.
3. **our constructors' validation** (:mod:`pna.files.numpy_builders`): numeric dtypes only (no
   structured, object, void, string or subarray dtype), arrays whose bytes are exactly
   ``prod(shape) * itemsize``, scalars of exactly one item, ``bytearray`` only from bytes; each charges
   the file's size bound (:mod:`pna.files.limits`), as do the checks made before any unpickling: zip
   entries stored and within the file, storages declared by the pickle (:mod:`pna.files.torch_scan`).
4. **the final walk** (:mod:`pna.files.walk`): the loaded object may hold only plain containers,
   numbers, strings, bytes, numeric numpy arrays and scalars, dense tensors and torch's
   dtype / device values; no cycles; tensors within the bound.

A refusal raises :class:`UnsafeFileError`, a file that cannot be read :class:`DamagedFileError`: one
line naming the file and the cause (:mod:`pna.files.refusals`). A refused file the user trusts by
name (:mod:`pna.files.trust`) is read by the unrestricted loader (``torch.load(weights_only=False)`` /
``pickle.Unpickler``) with a warning, except when it asks for more memory than the bound.

Example::

    >>> import pickle, tempfile, numpy as np
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "R-52.pkl").write_bytes(pickle.dumps({"model": {"w": np.ones(2, np.float32)}}, protocol=2))
    >>> load_file(folder / "R-52.pkl")["model"]["w"]
    array([1., 1.], dtype=float32)
    >>> _ = (folder / "bad.pkl").write_bytes(pickle.dumps(print, protocol=2))
    >>> load_file(folder / "bad.pkl")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    pna.files.refusals.UnsafeFileError: .../bad.pkl: refused to unpickle __builtin__.print: not a weights type ...
"""
from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from pna.files.limits import budget_for, check_safetensors_extents, check_zip
from pna.files.numpy_builders import NUMPY_NAMES, PICKLE_ENCODING, PendingArray, PendingDtype
from pna.files.refusals import (DamagedFileError, Refused, UnsafeFileError, damage_error, one_line,
                                refusal_error)
from pna.files.torch_scan import check_declared_storages
from pna.files.trust import TRUST_ENV, is_trusted
from pna.files.unpickler import unpickle
from pna.files.walk import checked

__all__ = ["DamagedFileError", "UnsafeFileError", "check_safetensors", "load_file"]

ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default container since torch 1.6 is a zip archive
LEGACY_TORCH_MAGIC = torch.serialization.MAGIC_NUMBER  # the first pickle of a legacy torch.save file
# The placeholders are registered with torch so that its BUILD reaches their validating __setstate__;
# under names with a newline, which no GLOBAL opcode can spell (it reads names line by line), so a
# file can never name them itself.
_PLACEHOLDERS = [(PendingDtype, "pna.files\n.PendingDtype"), (PendingArray, "pna.files\n.PendingArray")]
TORCH_SAFE_GLOBALS = [(value, name) for name, value in NUMPY_NAMES.items()] + _PLACEHOLDERS
_TORCH_GLOBAL = re.compile(r"GLOBAL (\S+) (?:was not an allowed global|whose module)")
_TORCH_REASON = re.compile(r"WeightsUnpickler error:\s*(.*?)\s*(?:Check the documentation of torch\.load|$)", re.S)
_TORCH_IMPORT = re.compile(r"Weights only load failed\. (.*? must be \S+ to load [^\n]*)")


def _torch_refusal(error: pickle.UnpicklingError) -> Refused | None:
    """What torch's restricted unpickler refused, named whole (None: the pickle is damaged, not refused)."""
    text = str(error)
    found = _TORCH_GLOBAL.search(text)
    if found:
        return Refused("type", found.group(1))
    found = _TORCH_REASON.search(text) or _TORCH_IMPORT.search(text)
    if found and found.group(1).strip():
        return Refused("crafted", f"torch's weights-only unpickler: {one_line(found.group(1))}")
    return None


def _torch_load(path: Path, map_location: Any) -> Any:
    with torch.serialization.safe_globals(TORCH_SAFE_GLOBALS), budget_for(path.stat().st_size):
        try:
            return torch.load(path, map_location=map_location, weights_only=True)
        except pickle.UnpicklingError as error:
            refused = _torch_refusal(error)
            if refused is None:
                raise
            raise refused from None


def _is_zip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(ZIP_MAGIC)) == ZIP_MAGIC


def _is_legacy_torch(first: object) -> bool:
    return type(first) is int and first == LEGACY_TORCH_MAGIC


def _read_restricted(path: Path, map_location: Any) -> Any:
    """The object stored in ``path`` through the four layers (module docstring)."""
    size = path.stat().st_size
    if _is_zip(path):
        check_declared_storages(path, check_zip(path))
        return checked(_torch_load(path, map_location), size)
    with open(path, "rb") as f, budget_for(size):
        first = unpickle(f, size)
    if not _is_legacy_torch(first):
        return checked(first, size)
    check_declared_storages(path, None)
    return checked(_torch_load(path, map_location), size)


def _read_unrestricted(path: Path, map_location: Any) -> Any:
    """Reached only for a file the user trusts by name (load_file): the opt-in this module exists for."""
    if not _is_zip(path):
        with open(path, "rb") as f:
            first = pickle.Unpickler(f, encoding=PICKLE_ENCODING).load()
        if not _is_legacy_torch(first):
            return first
    return torch.load(path, map_location=map_location, weights_only=False)


def load_file(path: str | Path, map_location: Any = "cpu") -> Any:
    """The object pickled in ``path`` (a ``torch.save`` file or a plain pickle), read without running code.

    Raises :class:`UnsafeFileError` when a layer refuses the file (unless the user trusts ``path``,
    :func:`pna.files.trust.trusting` / ``--trust-file``: then it is read with the unrestricted loader
    and a warning; a size refusal stays) and :class:`DamagedFileError` when it cannot be read: each
    one line naming the file and the cause. A missing file raises FileNotFoundError.
    """
    path = Path(path)
    try:
        return _read_restricted(path, map_location)
    except Refused as refused:
        if not (refused.trust_helps and is_trusted(path)):
            raise refusal_error(path, refused) from None
        what = refused.what
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as error:  # anything a library raises on a damaged file: one line naming the file
        raise damage_error(path, error) from error
    warnings.warn(f"{path}: needs {what}, which is not a weights type; reading it with the unrestricted "
                  f"unpickler because you trust this file (--trust-file / trust_files / {TRUST_ENV}): "
                  "code stored in it runs", UserWarning, stacklevel=2)
    try:
        return _read_unrestricted(path, map_location)
    except Exception as error:
        raise damage_error(path, error) from error


def check_safetensors(path: str | Path) -> None:
    """Refuse a safetensors file whose header or tensors reach beyond its size (:class:`UnsafeFileError`) or
    whose header is no JSON (:class:`DamagedFileError`), before the safetensors library reads it."""
    path = Path(path)
    try:
        check_safetensors_extents(path)
    except Refused as refused:
        raise refusal_error(path, refused, pickled=False) from None
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        raise
    except Exception as error:
        raise damage_error(path, error) from error
