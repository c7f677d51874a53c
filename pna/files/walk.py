"""The last layer: walk what a file loaded, swap numpy placeholders for their arrays, refuse anything else.

After an unpickler is done (ours or torch's), :func:`checked` visits every object once (shared
objects once, by identity) and accepts only:

* containers: ``dict``, ``OrderedDict`` (with its attributes, e.g. a state dict's ``_metadata``),
  ``collections.Counter``, ``list``, ``tuple`` (``torch.Size``), ``set``, ``frozenset``; keys and set
  members must be plain values (strings, numbers, numeric numpy scalars, bytes, None, tuples of those);
* ``None``, ``bool``, ``int``, ``float``, ``complex``, ``str``, ``bytes``, ``bytearray``;
* numpy arrays (exactly ``np.ndarray``) and scalars of bool / integer / float / complex dtype;
* tensors and parameters (strided, not nested) and torch's ``dtype`` / ``device`` / ``layout`` / ``memory_format``.

It refuses a cycle and nesting deeper than :data:`MAX_DEPTH`, a tensor whose logical size exceeds the
file's bound (a view of 3e9 elements over a one-element storage), and distinct storages plus numpy
arrays that together do (:mod:`pna.files.limits`): arrays are views of the file's bytes, so many
arrays over one shared buffer would multiply what a later copy allocates.
"""
from __future__ import annotations

import collections
from typing import Any

import numpy as np
import torch

from pna.files.limits import Budget
from pna.files.numpy_builders import PendingArray
from pna.files.refusals import Refused

MAX_DEPTH = 64  # a checkpoint nests about 6 deep (checkpoint > optimizer > state > index > name > tensor)
PLAIN = (type(None), bool, int, float, complex, str, bytes)
NUMERIC_KINDS = "biufc"  # numpy's dtype kinds of bool, signed, unsigned, float, complex
TORCH_VALUES = (torch.dtype, torch.device, torch.layout, torch.memory_format)
DICTS = (dict, collections.OrderedDict, collections.Counter)


def _numeric_scalar(obj: Any) -> bool:
    return isinstance(obj, np.generic) and obj.dtype.kind in NUMERIC_KINDS and type(obj) is obj.dtype.type


class _Walk:
    def __init__(self, file_size: int):
        self.done: dict[int, Any] = {}  # id -> what replaces it
        self.open: set[int] = set()  # ids being walked: meeting one again is a cycle
        self.keep: list[Any] = []  # keeps walked objects alive so that their ids stay theirs
        self.storages: dict[tuple[str, int], int] = {}
        self.data_budget = Budget(file_size)
        self.bound = self.data_budget.bound

    def visit(self, obj: Any, depth: int) -> Any:
        if type(obj) in PLAIN:
            return obj
        key = id(obj)
        if key in self.done:
            return self.done[key]
        if key in self.open:
            raise Refused("crafted", f"a {type(obj).__name__} that contains itself")
        if depth > MAX_DEPTH:
            raise Refused("crafted", f"objects nested more than {MAX_DEPTH} deep")
        self.open.add(key)
        result = self._replace(obj, depth)
        self.open.discard(key)
        self.done[key] = result
        self.keep.append(obj)
        return result

    def _replace(self, obj: Any, depth: int) -> Any:
        kind = type(obj)
        if kind in DICTS:
            for k in list(obj):
                self._key(k)
                obj[k] = self.visit(obj[k], depth + 1)
            if kind is not dict and vars(obj):
                self._attributes(obj, depth)
            return obj
        if kind is list:
            obj[:] = [self.visit(item, depth + 1) for item in obj]
            return obj
        if kind is tuple or kind is torch.Size:
            items = tuple(self.visit(item, depth + 1) for item in obj)
            return obj if kind is torch.Size or all(a is b for a, b in zip(items, obj)) else items
        if kind in (set, frozenset):
            for item in obj:
                self._key(item)
            return obj
        if kind is PendingArray:
            if obj.array is None:
                raise Refused("crafted", "a numpy array whose data never came (no BUILD)")
            return self._array(obj.array)
        return self._leaf(obj, depth)

    def _leaf(self, obj: Any, depth: int) -> Any:
        kind = type(obj)
        if kind is bytearray or kind in TORCH_VALUES:
            return obj
        if kind is np.ndarray:
            return self._array(obj)
        if _numeric_scalar(obj):
            return obj
        if kind in (torch.Tensor, torch.nn.Parameter):
            self._tensor(obj)
            if obj.__dict__:
                self._attributes(obj, depth)
            return obj
        raise Refused("crafted", f"a {kind.__module__}.{kind.__qualname__} in the loaded data (not a weights type)")

    def _attributes(self, obj: Any, depth: int) -> None:
        attributes = vars(obj)
        for name in list(attributes):
            if type(name) is not str:
                raise Refused("crafted", f"an attribute named by a {type(name).__name__}")
            attributes[name] = self.visit(attributes[name], depth + 1)

    def _key(self, key: Any) -> None:
        if type(key) in PLAIN or type(key) in TORCH_VALUES or _numeric_scalar(key):
            return
        if type(key) is tuple:
            for item in key:
                self._key(item)
            return
        raise Refused("crafted", f"a dict key or set member of type {type(key).__name__}")

    def _array(self, array: np.ndarray) -> np.ndarray:
        dtype = array.dtype
        if dtype.kind not in NUMERIC_KINDS or dtype.hasobject or dtype.fields or dtype.subdtype or not dtype.itemsize:
            raise Refused("crafted", f"a numpy array of dtype {dtype}")
        self.data_budget.charge(array.nbytes, f"numpy arrays (the last of shape {array.shape} and dtype {dtype})")
        return array

    def _tensor(self, tensor: torch.Tensor) -> None:
        if tensor.layout is not torch.strided or tensor.is_nested:
            raise Refused("crafted", f"a {tensor.layout} tensor (weights are dense)")
        logical = tensor.numel() * tensor.element_size()
        if logical > self.bound:
            raise Refused("size", f"a tensor of shape {tuple(tensor.shape)} ({logical:,} bytes) over a storage "
                                  f"of {tensor.untyped_storage().nbytes():,} bytes, beyond the bound of {self.bound:,} bytes")
        storage = tensor.untyped_storage()
        key = (str(tensor.device), storage.data_ptr() or id(storage))
        if key not in self.storages:
            self.storages[key] = storage.nbytes()
            self.data_budget.charge(storage.nbytes(), f"{len(self.storages):,} tensor storages")


def checked(obj: Any, file_size: int) -> Any:
    """``obj`` with numpy placeholders swapped for their arrays, after refusing anything outside the weights types."""
    return _Walk(file_size).visit(obj, 0)
