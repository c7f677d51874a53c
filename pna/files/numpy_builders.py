"""Validating stand-ins for the numpy callables a pickle names: numpy sees only checked arguments.

A pickled ndarray is ``_reconstruct(ndarray, (0,), b'b')`` followed by BUILD with its state
``(version, shape, dtype, is_fortran, raw_bytes)``; its dtype is ``dtype('f4', False, True)``
followed by BUILD ``(3, '<', None, None, None, -1, -1, 0)``; a scalar is ``scalar(dtype, raw_bytes)``;
protocol 5 writes ``_frombuffer(buffer, dtype, shape, order)``. Handing the real numpy callables to an
unpickler lets a file run ``dtype.__setstate__`` with a structured dtype holding an object field while
claiming to hold no objects (numpy then reads the file's bytes as pointers: a segfault), or make
empty arrays of 3e9 elements. So the unpicklers (ours and torch's) get these functions under numpy's
names instead. They never call numpy on what the file says until it is checked:

* dtypes: only the simple numeric / bool type codes of :data:`NUMERIC_CODES` (no structured, object,
  void, string, datetime or subarray dtype, no zero item size); the BUILD state may give the byte
  order and nothing else (no names, fields, subarray; flags without numpy's object bits);
* arrays: a shape of non-negative ints, ``len(raw) == prod(shape) * itemsize`` exactly, then
  ``np.frombuffer`` over the file's bytes (so a file cannot ask for more than it holds; arrays read
  from ``bytes`` are read-only views, copy them to write);
* scalars: ``len(raw) == itemsize``.

Every scalar and byte string they make is charged to the file's budget (:mod:`pna.files.limits`),
every array by the final walk.
:class:`PendingDtype` and :class:`PendingArray` are what the file's REDUCE gets back; BUILD sets
their state; the final walk (:mod:`pna.files.walk`) swaps each PendingArray for its array.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from pna.files.limits import POINTER_BYTES, charge
from pna.files.refusals import Refused, short

# numpy's type codes ('f4', 'i8', 'b1', ...) of bool, integers, floats and complex, as dtype pickles name them.
NUMERIC_CODES = frozenset(np.dtype(code).str[1:] for code in "?bBhHiIlLqQefdgFDG")
BYTE_ORDERS = ("<", ">", "|", "=")
MAX_DIMS = 64  # numpy 2's NPY_MAXDIMS
ARRAY_ORDERS = ("C", "F")
PICKLE_ENCODING = "latin1"  # Python 2 str (numpy's raw bytes) read back as str: one char per byte


def _raw_bytes(raw: object, what: str) -> bytes | bytearray:
    """The bytes of an array or scalar: bytes / bytearray, or a latin1 str (a Python 2 pickle)."""
    if isinstance(raw, (bytes, bytearray)):
        return raw
    if isinstance(raw, str):
        charge(len(raw), f"the {len(raw):,} bytes of {what}")
        try:
            return raw.encode(PICKLE_ENCODING)
        except UnicodeEncodeError:
            raise Refused("crafted", f"{what} whose data is text beyond latin1") from None
    raise Refused("crafted", f"{what} whose data is a {type(raw).__name__}, not bytes (an object array?)")


class PendingDtype:
    """A numeric numpy dtype named by the file; its BUILD state may only set the byte order."""

    __slots__ = ("base", "dtype")

    def __init__(self, base: np.dtype):
        self.base, self.dtype = base, None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) not in (8, 9) or state[0] not in (3, 4):
            raise Refused("crafted", f"numpy dtype state {short(state)}")
        endian, subarray, names, fields, elsize, alignment, flags = state[1:8]
        metadata = state[8] if len(state) == 9 else None
        simple = (endian in BYTE_ORDERS and subarray is None and names is None and fields is None
                  and elsize in (-1, self.base.itemsize) and type(alignment) is int and flags == 0
                  and metadata in (None, {}))
        if not simple:
            raise Refused("crafted", f"numpy dtype {self.base.str[1:]} with state {short(state)} (a structured, "
                                     "object or subarray dtype)")
        self.dtype = self.base.newbyteorder(endian) if endian in "<>" else self.base

    def resolved(self) -> np.dtype:
        return self.base if self.dtype is None else self.dtype


def numpy_dtype(code: Any, align: Any = False, copy: Any = True) -> PendingDtype:
    """``numpy.dtype(code, align, copy)`` for the numeric codes only."""
    if isinstance(code, bytes):
        code = code.decode(PICKLE_ENCODING)
    if not isinstance(code, str) or code not in NUMERIC_CODES:
        raise Refused("crafted", f"numpy dtype {short(code)} (only bool, integer, float and complex dtypes are weights)")
    return PendingDtype(np.dtype(code))


def _dtype_of(value: Any, what: str) -> np.dtype:
    if type(value) is not PendingDtype:
        raise Refused("crafted", f"{what} whose dtype is a {type(value).__name__}")
    return value.resolved()


def _shape_of(shape: Any, what: str) -> tuple[int, ...]:
    if not isinstance(shape, tuple) or len(shape) > MAX_DIMS or not all(type(n) is int and n >= 0 for n in shape):
        raise Refused("crafted", f"{what} of shape {short(shape)}")
    return shape


def materialise(raw: Any, dtype: np.dtype, shape: tuple[int, ...], order: str, what: str,
                swap: bool = False) -> np.ndarray:
    """The array of ``shape`` whose bytes are ``raw``: refused unless ``raw`` holds exactly its elements.
    ``swap``: in native byte order, as numpy's ``ndarray.__setstate__`` gives it (``_frombuffer`` does not)."""
    data = _raw_bytes(raw, what)
    count = math.prod(shape)
    if len(data) != count * dtype.itemsize:
        raise Refused("crafted", f"{what} of shape {shape} and dtype {dtype} ({count * dtype.itemsize:,} bytes) "
                                 f"over {len(data):,} bytes")
    native = dtype.newbyteorder("=") if swap else dtype
    if count == 0:
        return np.empty(shape, native, order=order)
    # A view of the file's bytes (read-only over bytes, as numpy's frombuffer gives it): no allocation here;
    # the final walk charges every array's bytes to the file's bound, so N arrays over one shared buffer
    # cannot multiply what the file holds.
    array = np.frombuffer(data, dtype=dtype, count=count).reshape(shape, order=order)
    if native == dtype:
        return array
    charge(len(data), f"{what} of shape {shape} in native byte order")
    return array.astype(native, order="K")


class PendingArray:
    """An ndarray named by the file; its BUILD state ``(version, shape, dtype, is_fortran, raw)`` makes it."""

    __slots__ = ("array",)

    def __init__(self):
        self.array = None

    def __setstate__(self, state: Any) -> None:
        if self.array is not None:
            raise Refused("crafted", "a numpy array whose state is set twice")
        if isinstance(state, tuple) and len(state) == 5 and state[0] == 1:
            state = state[1:]
        if not isinstance(state, tuple) or len(state) != 4 or type(state[2]) not in (bool, int) or state[2] not in (0, 1):
            raise Refused("crafted", f"numpy array state {short(state)}")
        shape, dtype, fortran, raw = state
        self.array = materialise(raw, _dtype_of(dtype, "a numpy array"), _shape_of(shape, "a numpy array"),
                                 "F" if fortran else "C", "a numpy array", swap=True)


def ndarray_name(*args: Any) -> None:
    """What the file gets for ``numpy.ndarray``: only ever passed to ``_reconstruct``, never called."""
    raise Refused("crafted", "a call of numpy.ndarray")


def reconstruct(subtype: Any, shape: Any = (0,), typecode: Any = b"b") -> PendingArray:
    """``numpy.core.multiarray._reconstruct``: an empty plain ndarray, filled by BUILD."""
    if subtype is not ndarray_name or shape != (0,) or typecode not in (b"b", "b"):
        raise Refused("crafted", f"numpy _reconstruct{short((subtype, shape, typecode))}")
    return PendingArray()


def scalar(dtype: Any, data: Any = None) -> np.generic:
    """``numpy.core.multiarray.scalar``: a numeric numpy scalar from exactly its item's bytes."""
    dtype = _dtype_of(dtype, "a numpy scalar")
    raw = _raw_bytes(data, "a numpy scalar")
    if len(raw) != dtype.itemsize:
        raise Refused("crafted", f"numpy scalar of dtype {dtype} over {len(raw)} bytes")
    charge(dtype.itemsize, f"a numpy scalar of dtype {dtype}")
    return np.frombuffer(raw, dtype=dtype, count=1)[0]


def frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    """``numpy.core.numeric._frombuffer`` (pickle protocol 5): an array over in-band bytes."""
    if order not in ARRAY_ORDERS:
        raise Refused("crafted", f"numpy array of order {short(order)}")
    return materialise(buffer, _dtype_of(dtype, "a numpy array"), _shape_of(shape, "a numpy array"), order,
                       "a numpy array")


def _numpy_names() -> dict[str, Any]:
    """The stand-ins under every name numpy 1 (``numpy.core``) and 2 (``numpy._core``) pickles use."""
    names: dict[str, Any] = {"numpy.ndarray": ndarray_name, "numpy.dtype": numpy_dtype}
    for package in ("numpy.core", "numpy._core"):
        names[f"{package}.multiarray._reconstruct"] = reconstruct
        names[f"{package}.multiarray.scalar"] = scalar
        names[f"{package}.numeric._frombuffer"] = frombuffer
    return names


NUMPY_NAMES = _numpy_names()


def charged_len(items: Any, what: str) -> None:
    """Charge a container of ``len(items)`` slots built from the file."""
    if not isinstance(items, (list, tuple, set, frozenset, dict)):
        raise Refused("crafted", f"{what} of a {type(items).__name__}")
    charge(len(items) * POINTER_BYTES, f"{what} of {len(items):,} items")
