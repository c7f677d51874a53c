"""The plain-pickle reader: builds dicts, lists, tuples, sets, numbers, strings, bytes and numpy arrays, nothing else.

Restricting ``find_class`` (the "Restricting Globals" pattern of Python's pickle documentation) is
not enough: the C unpickler then still applies BUILD (``__setstate__``, ``__dict__`` and slot
updates) to whatever an allowed global returns, functions and classes included, so a file could
rewrite the defaults of an allowed numpy function for the whole process. The C unpickler cannot
intercept BUILD, so :class:`DataUnpickler` subclasses the pure-Python ``pickle._Unpickler`` and
replaces the opcodes that run something:

* globals come from :data:`PICKLE_GLOBALS` only (never imported): the validating numpy stand-ins of
  :mod:`pna.files.numpy_builders` and checked wrappers of ``set``, ``frozenset``, ``complex``,
  ``bytes``, ``bytearray``, ``OrderedDict`` and ``_codecs.encode``; anything else is refused by name;
* REDUCE calls only those; BUILD applies only to the numpy placeholders (which validate their
  state) and to an ``OrderedDict``'s attributes (torch's state dicts keep ``_metadata`` there);
* NEWOBJ, NEWOBJ_EX, INST, OBJ (instances of classes), PERSID / BINPERSID (external objects) and
  EXT1/2/4 (the extension registry) are refused: no weights pickle uses them;
* SETITEM(S), APPEND(S), ADDITEMS apply only to dicts, lists and sets;
* reads never ask for more than the file has left (:class:`BoundedReader`), so a declared length
  allocates nothing before its bytes are there.

No library reads plain pickles this way: torch's restricted unpickler reads only ``torch.save``'s
container, numpy's ``allow_pickle=False`` refuses pickles outright.
"""
from __future__ import annotations

import collections
import pickle
from struct import unpack
from typing import Any, BinaryIO

from pna.files.limits import charge
from pna.files.numpy_builders import NUMPY_NAMES, PICKLE_ENCODING, PendingArray, PendingDtype, charged_len
from pna.files.refusals import Refused


class BoundedReader:
    """A binary file whose reads are refused (EOFError) when they ask for more bytes than remain."""

    def __init__(self, f: BinaryIO, size: int):
        self._f, self._left = f, size - f.tell()
        self.readline = f.readline  # bounded by the file itself: it returns what is there

    def read(self, n: int = -1) -> bytes:
        if n > self._left:
            raise EOFError(f"the pickle declares {n:,} bytes where {self._left:,} remain")
        data = self._f.read(n)
        self._left -= len(data)
        return data

    def tell(self) -> int:
        return self._f.tell()


def _latin1_encode(text: Any, encoding: str = PICKLE_ENCODING) -> bytes:
    """``_codecs.encode`` as protocol < 3 pickles of ``bytes`` use it (latin1 only, no other codec)."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise Refused("type", f"_codecs.encode with encoding {encoding!r}")
    charge(len(text), f"a byte string of {len(text):,} bytes")
    return text.encode("latin1")


def _bytearray(data: Any = b"", encoding: str | None = None) -> bytearray:
    """``bytearray`` from bytes, or from a latin1 str as protocol 2 writes it: never ``bytearray(n)``."""
    if isinstance(data, str) and encoding in ("latin1", "latin-1"):
        data = _latin1_encode(data)
    elif isinstance(data, (bytes, bytearray)) and encoding is None:
        charge(len(data), f"a bytearray of {len(data):,} bytes")
    else:
        raise Refused("crafted", f"bytearray of a {type(data).__name__} (only from bytes)")
    return bytearray(data)


def _bytes(data: Any = b"", encoding: str | None = None) -> bytes:
    """``bytes()`` as protocols < 3 write an empty byte string (``bytes(n)`` is never called)."""
    return bytes(_bytearray(data, encoding))


def _set(items: Any = ()) -> set:
    charged_len(items, "a set")
    return set(items)


def _frozenset(items: Any = ()) -> frozenset:
    charged_len(items, "a frozenset")
    return frozenset(items)


def _ordered_dict(items: Any = ()) -> collections.OrderedDict:
    charged_len(items, "an OrderedDict")
    return collections.OrderedDict(items)


def _complex(real: Any = 0.0, imag: Any = 0.0) -> complex:
    if type(real) not in (int, float) or type(imag) not in (int, float):
        raise Refused("crafted", f"complex of {type(real).__name__}, {type(imag).__name__}")
    return complex(real, imag)


_BUILTINS = {"set": _set, "frozenset": _frozenset, "complex": _complex, "bytearray": _bytearray, "bytes": _bytes}
PICKLE_GLOBALS: dict[str, Any] = {
    **NUMPY_NAMES,
    "collections.OrderedDict": _ordered_dict,
    "_codecs.encode": _latin1_encode,
    **{f"{module}.{name}": value for module in ("builtins", "__builtin__") for name, value in _BUILTINS.items()},
}
_CALLABLE = {id(value) for value in PICKLE_GLOBALS.values()}


def _refuse_opcode(name: str, why: str):
    def refuse(self) -> None:
        raise Refused("crafted", f"pickle opcode {name} ({why})")
    return refuse


class DataUnpickler(pickle._Unpickler):
    """``pickle._Unpickler`` that builds data only (see the module docstring)."""

    dispatch = dict(pickle._Unpickler.dispatch)

    def find_class(self, module: str, name: str) -> Any:
        # Called for GLOBAL and STACK_GLOBAL with the names as written (Python 2's __builtin__ is listed).
        try:
            return PICKLE_GLOBALS[f"{module}.{name}"]
        except (KeyError, TypeError):
            raise Refused("type", f"{module}.{name}") from None

    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        if id(func) not in _CALLABLE:
            raise Refused("crafted", f"a call of a {type(func).__name__} (only the allow-listed constructors are called)")
        if type(args) is not tuple:
            raise Refused("crafted", f"a call with arguments of type {type(args).__name__}")
        self.stack[-1] = func(*args)
    dispatch[pickle.REDUCE[0]] = load_reduce

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if type(inst) in (PendingArray, PendingDtype):
            inst.__setstate__(state)
        elif type(inst) is collections.OrderedDict and type(state) is dict and all(type(k) is str for k in state):
            charged_len(state, "the attributes of an OrderedDict")
            inst.__dict__.update(state)  # a state dict's _metadata; its values are checked by the final walk
        else:
            raise Refused("crafted", f"setting the state of a {type(inst).__name__} (pickle BUILD)")
    dispatch[pickle.BUILD[0]] = load_build

    def _target(self, kind: type, opcode: str) -> Any:
        target = self.stack[-1]
        if type(target) not in ((dict, collections.OrderedDict) if kind is dict else (kind,)):
            raise Refused("crafted", f"pickle {opcode} on a {type(target).__name__}")
        return target

    def load_setitem(self) -> None:
        value, key = self.stack.pop(), self.stack.pop()
        self._target(dict, "SETITEM")[key] = value
    dispatch[pickle.SETITEM[0]] = load_setitem

    def load_setitems(self) -> None:
        items = self.pop_mark()
        target = self._target(dict, "SETITEMS")
        for i in range(0, len(items), 2):  # an odd count: IndexError, a damaged pickle
            target[items[i]] = items[i + 1]
    dispatch[pickle.SETITEMS[0]] = load_setitems

    def load_append(self) -> None:
        value = self.stack.pop()
        self._target(list, "APPEND").append(value)
    dispatch[pickle.APPEND[0]] = load_append

    def load_appends(self) -> None:
        items = self.pop_mark()
        self._target(list, "APPENDS").extend(items)
    dispatch[pickle.APPENDS[0]] = load_appends

    def load_additems(self) -> None:
        items = self.pop_mark()
        self._target(set, "ADDITEMS").update(items)
    dispatch[pickle.ADDITEMS[0]] = load_additems

    def load_bytearray8(self) -> None:
        (length,) = unpack("<Q", self.read(8))
        self.append(bytearray(self.read(length)))  # read first: the length is checked against the file
    dispatch[pickle.BYTEARRAY8[0]] = load_bytearray8

    for _opcode, _why in (("NEWOBJ", "an instance of a class"), ("NEWOBJ_EX", "an instance of a class"),
                          ("INST", "an instance of a class"), ("OBJ", "an instance of a class"),
                          ("PERSID", "an object from outside the pickle"),
                          ("BINPERSID", "an object from outside the pickle"),
                          ("EXT1", "the extension registry"), ("EXT2", "the extension registry"),
                          ("EXT4", "the extension registry")):
        dispatch[getattr(pickle, _opcode)[0]] = _refuse_opcode(_opcode, _why)
    del _opcode, _why


def unpickle(f: BinaryIO, size: int) -> Any:
    """The next pickle in ``f`` (of ``size`` bytes in all), read by :class:`DataUnpickler` (placeholders unswapped)."""
    return DataUnpickler(BoundedReader(f, size), encoding=PICKLE_ENCODING).load()
