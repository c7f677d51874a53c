"""How much memory a file from elsewhere may make pna allocate, and the checks made before reading it.

The bound: **no allocation a file asks for may exceed the file's own size plus**
:data:`ALLOCATION_MARGIN`, and all of a file's allocations together may not either. A weights file
stores every byte of every array and tensor it holds (pickles, torch's zip and legacy formats,
safetensors alike), so a genuine file never needs more; a crafted one that declares a 3 GB
``bytearray`` in 86 bytes, or storages of 3e9 elements it does not hold, is refused before anything
is allocated, with one line naming the file, what it asked for and the bound.

Where the bound is enforced:

* the validating constructors of :mod:`pna.files.numpy_builders` and the plain-pickle reader
  (:mod:`pna.files.unpickler`) charge each array, scalar, bytes and container they build to the
  :class:`Budget` of the file being read (:func:`budget_for`);
* :func:`check_zip`: a ``torch.save`` zip is refused when an entry is compressed (torch never
  compresses: a compressed entry is how a zip bomb hides its size) or when the entries' sizes
  exceed the bound; torch then allocates at most what the entries hold;
* :func:`pna.files.torch_scan.check_declared_storages`: the storages a ``torch.save`` pickle declares
  (legacy files allocate them before reading their bytes);
* :func:`check_safetensors_extents`: the header's length and every tensor's extent against the file's size;
* the final walk (:mod:`pna.files.walk`): every tensor's logical size and the distinct storages.
"""
from __future__ import annotations

import contextvars
import json
import math
import struct
import zipfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pna.files.refusals import Refused, short

# What a file may ask for beyond its own size: room for the Python objects around the data (dict and
# list slots, small strings) and for tiny files (an empty state dict is ~300 bytes). 1 MiB is far below
# any allocation that hurts, and above the container overhead of the largest real weights file we read
# (a Swin-B mmseg checkpoint: ~1,400 containers, a few hundred KiB of Python objects).
ALLOCATION_MARGIN = 1 << 20
POINTER_BYTES = 8  # one slot of a list, set or dict built from a file, charged per element
SAFETENSORS_HEADER_LIMIT = 100_000_000  # the safetensors library's own limit on its JSON header
# Bytes per element of each safetensors dtype (the format's documented names).
SAFETENSORS_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
                           "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8, "C64": 8}

_current: contextvars.ContextVar["Budget | None"] = contextvars.ContextVar("pna_files_budget", default=None)


class Budget:
    """What a file may still make us allocate: its size + :data:`ALLOCATION_MARGIN`, in bytes."""

    def __init__(self, file_size: int):
        self.file_size = file_size
        self.bound = file_size + ALLOCATION_MARGIN
        self.used = 0

    def charge(self, nbytes: int, what: str) -> None:
        """Count ``nbytes`` for ``what``; :class:`Refused` ('size') past the bound, before anything is allocated."""
        self.used += nbytes
        if nbytes > self.bound or self.used > self.bound:
            total = "" if nbytes == self.used else f", {self.used:,} bytes with what it asked for before"
            raise Refused("size", f"it asks for {what} ({nbytes:,} bytes{total}), beyond the bound of "
                                  f"{self.bound:,} bytes (the file's {self.file_size:,} bytes + "
                                  f"{ALLOCATION_MARGIN:,})")


@contextmanager
def budget_for(file_size: int) -> Iterator[Budget]:
    """A fresh budget for a file of ``file_size`` bytes, charged by what runs inside the block (per thread)."""
    budget = Budget(file_size)
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


def charge(nbytes: int, what: str) -> None:
    """Charge the budget of the file being read (refused when nothing is being read: no budget, no allocation)."""
    budget = _current.get()
    if budget is None:
        raise Refused("size", f"{what} outside pna.files.load_file (no size bound to check it against)")
    budget.charge(nbytes, what)


def check_zip(path: Path) -> list[zipfile.ZipInfo]:
    """The entries of the zip ``path`` after checking that reading them stays within its budget."""
    size = path.stat().st_size
    with zipfile.ZipFile(path) as archive:
        entries = archive.infolist()
    for entry in entries:
        if entry.compress_type != zipfile.ZIP_STORED:
            raise Refused("crafted", f"zip entry {entry.filename!r} is compressed (method {entry.compress_type}); "
                                     "torch.save stores its entries uncompressed")
        if entry.file_size != entry.compress_size or entry.header_offset + entry.compress_size > size:
            raise Refused("size", f"zip entry {entry.filename!r} declares {entry.file_size:,} bytes "
                                  f"({entry.compress_size:,} stored at offset {entry.header_offset:,}) in a "
                                  f"file of {size:,} bytes")
    Budget(size).charge(sum(entry.file_size for entry in entries), f"{len(entries)} zip entries")
    return entries


def _read_exactly(f, n: int, what: str) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise EOFError(f"{what}: {n} bytes declared, {len(data)} present")
    return data


def check_safetensors_extents(path: Path) -> None:
    """Refuse a safetensors file whose header or tensors reach beyond the file, before the library reads it."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        (header_bytes,) = struct.unpack("<Q", _read_exactly(f, 8, "the header length"))
        if header_bytes > min(size - 8, SAFETENSORS_HEADER_LIMIT):
            raise Refused("size", f"its header declares {header_bytes:,} bytes in a file of {size:,} bytes "
                                  f"(the format allows {SAFETENSORS_HEADER_LIMIT:,})")
        header = json.loads(_read_exactly(f, header_bytes, "the header").decode("utf-8"))
    if not isinstance(header, dict):
        raise Refused("crafted", f"its header is a JSON {type(header).__name__}, not an object")
    data_bytes = size - 8 - header_bytes
    for name, entry in header.items():
        if name != "__metadata__":
            _check_tensor_entry(name, entry, data_bytes)
    Budget(size).charge(sum(_nbytes(entry) for name, entry in header.items() if name != "__metadata__"),
                        "the safetensors tensors")


def _nbytes(entry: dict) -> int:
    return math.prod(entry["shape"]) * SAFETENSORS_DTYPE_BYTES[entry["dtype"]]


def _check_tensor_entry(name: str, entry: object, data_bytes: int) -> None:
    """One tensor of a safetensors header: a known dtype, a shape and an extent inside the data."""
    if not isinstance(entry, dict) or entry.get("dtype") not in SAFETENSORS_DTYPE_BYTES:
        raise Refused("crafted", f"safetensors entry {name!r} is not a tensor of a known dtype: {short(entry)}")
    shape, offsets = entry.get("shape"), entry.get("data_offsets")
    valid = (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)
             and isinstance(offsets, list) and len(offsets) == 2 and all(type(n) is int for n in offsets))
    if not valid:
        raise Refused("crafted", f"safetensors entry {name!r} has no valid shape and data_offsets: {short(entry)}")
    begin, end = offsets
    nbytes = _nbytes(entry)
    if not 0 <= begin <= end <= data_bytes or end - begin != nbytes:
        raise Refused("size", f"safetensors tensor {name!r} ({entry['dtype']} {shape}: {nbytes:,} bytes) declares "
                              f"bytes {begin:,}..{end:,} of the {data_bytes:,} the file holds")
