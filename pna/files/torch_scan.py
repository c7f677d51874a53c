"""A first pass over a ``torch.save`` pickle: the storages it declares, counted before torch allocates them.

A legacy (pre-1.6) ``torch.save`` file is a row of pickles (magic number, protocol, sys_info, the
objects, the storage keys) followed by the storages' bytes; torch
allocates each storage at the size its persistent id declares (``('storage', FloatStorage, key,
location, numel, ...)``) before it reads a single byte of it: a 400-byte file can declare 3e9
elements. :func:`check_declared_storages` unpickles the file's pickle with :class:`StorageRecorder`
first, which builds nothing of torch's (every torch global is a :class:`_Stub`; torch's own
unpickler decides afterwards which ones it allows) and records the persistent ids, then charges
``numel x element size`` of each distinct storage to a budget of the file's size
(:mod:`pna.files.limits`). Every pickle torch will read from the file is read here first with reads
bounded by what the file holds: torch reads a legacy file through ``open()``, whose ``read(n)``
allocates ``n`` bytes before finding that fewer are there. The same pass bounds what the pickle's containers ask for (``set`` or
``OrderedDict`` of a shared list, repeated) and runs on the ``data.pkl`` of zip files too.
"""
from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Any, BinaryIO

import torch

from pna.files.limits import POINTER_BYTES, Budget, budget_for, charge
from pna.files.refusals import Refused
from pna.files.unpickler import PICKLE_GLOBALS, BoundedReader, DataUnpickler
from pna.files.numpy_builders import PICKLE_ENCODING

LEGACY_HEADER_PICKLES = 3  # magic number, protocol version, sys_info: then the pickle with the storages


def _element_sizes() -> dict[str, int]:
    """Bytes per element of each storage class a torch.save pickle names (``torch.FloatStorage`` -> 4)."""
    sizes = {f"torch.{name}": torch._utils._element_size(dtype)
             for dtype, name in torch.storage._dtype_to_storage_type_map().items()}
    sizes["torch.UntypedStorage"] = 1
    return sizes


ELEMENT_SIZES = _element_sizes()
LARGEST_ELEMENT = max(ELEMENT_SIZES.values())  # for a storage class torch will refuse anyway


class _Stub:
    """A torch global during the first pass: calling or building it makes another stub, nothing else."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, *args: Any) -> "_Stub":
        for arg in args:  # what the call would copy: a tuple or list the file shares between many calls
            if isinstance(arg, (list, tuple, dict, set)):
                charge(len(arg) * POINTER_BYTES, f"a call of {self.name} with {len(arg):,} items")
        return _Stub(f"{self.name}()")


class StorageRecorder(DataUnpickler):
    """:class:`DataUnpickler` that stubs the globals it does not know and records persistent ids."""

    dispatch = dict(DataUnpickler.dispatch)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.storages: dict[Any, tuple[str, int]] = {}

    def find_class(self, module: str, name: str) -> Any:
        full = f"{module}.{name}"
        return PICKLE_GLOBALS[full] if full in PICKLE_GLOBALS else _Stub(full)

    def persistent_load(self, pid: Any) -> _Stub:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            storage_type, key, numel = pid[1], pid[2], pid[4]
            if type(numel) is not int or numel < 0:
                raise Refused("crafted", f"a storage of {numel!r} elements")
            name = storage_type.name if isinstance(storage_type, _Stub) else type(storage_type).__name__
            self.storages[key if isinstance(key, (str, int)) else id(key)] = (name, numel)
        return _Stub("storage")

    def load_persid(self) -> None:  # protocol 0's text persistent id
        self.append(self.persistent_load(self.readline()[:-1].decode("ascii")))
    dispatch[pickle.PERSID[0]] = load_persid

    def load_binpersid(self) -> None:
        self.append(self.persistent_load(self.stack.pop()))
    dispatch[pickle.BINPERSID[0]] = load_binpersid

    def load_reduce(self) -> None:
        if isinstance(self.stack[-2], _Stub):
            args = self.stack.pop()
            self.stack[-1] = self.stack[-1](*args) if type(args) is tuple else _Stub("call")
        else:
            super().load_reduce()
    dispatch[pickle.REDUCE[0]] = load_reduce

    def load_build(self) -> None:
        if isinstance(self.stack[-2], _Stub):
            self.stack.pop()  # torch's unpickler decides whether this state may be set
        else:
            super().load_build()
    dispatch[pickle.BUILD[0]] = load_build

    def _target(self, kind: type, opcode: str) -> Any:
        if isinstance(self.stack[-1], _Stub):  # e.g. a collections.Counter: torch's unpickler decides
            return kind()
        return super()._target(kind, opcode)

    def load_newobj(self) -> None:
        self.stack.pop()
        self.stack[-1] = _Stub("new object")
    dispatch[pickle.NEWOBJ[0]] = load_newobj

    def declared_bytes(self) -> int:
        return sum(numel * ELEMENT_SIZES.get(name, LARGEST_ELEMENT) for name, numel in self.storages.values())


def _record(f: BinaryIO, size: int) -> StorageRecorder:
    recorder = StorageRecorder(BoundedReader(f, size), encoding=PICKLE_ENCODING)
    recorder.load()
    return recorder


def check_declared_storages(path: Path, zip_entries: list[zipfile.ZipInfo] | None) -> None:
    """Refuse a ``torch.save`` file whose pickle declares more storage bytes than the file could hold.

    ``zip_entries``: the file's zip entries (:func:`pna.files.limits.check_zip`), None for a legacy file.
    """
    size = path.stat().st_size
    with budget_for(size):
        if zip_entries is not None:
            pickles = [entry for entry in zip_entries if entry.filename.endswith("data.pkl")]
            if len(pickles) != 1:
                raise Refused("crafted", f"a torch zip with {len(pickles)} data.pkl entries")
            with zipfile.ZipFile(path) as archive:
                data = archive.read(pickles[0])
            recorder = _record(io.BytesIO(data), len(data))
        else:
            with open(path, "rb") as f:
                for _ in range(LEGACY_HEADER_PICKLES):
                    _record(f, size)
                recorder = _record(f, size)
                _record(f, size)  # the storage keys: torch reads this pickle from the file too (found by fuzzing:
                # a string length declared there made torch's read() ask for gigabytes)
    Budget(size).charge(recorder.declared_bytes(), f"{len(recorder.storages):,} storages declared by its pickle")
