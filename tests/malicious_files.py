"""Crafted weight files whose unpickling would write a marker file, for the safe-loading tests
(``test_safe_load.py``, ``test_safe_load_entry_points.py``): a payload (``os.system``, ``open``,
``Path.touch``) hidden beside real tensors, in the containers users hold."""
import os
import pathlib
import pickle
import shlex
from pathlib import Path

import numpy as np
import torch

from pna.files import UnsafeFileError


# ---- the payloads: each writes `marker` when unpickled ------------------------------------------
class SystemPayload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


class OpenPayload(SystemPayload):
    def __reduce__(self):
        return open, (str(self.marker), "w")


class TouchPayload(SystemPayload):
    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


PAYLOADS = {"system": SystemPayload, "open": OpenPayload, "touch": TouchPayload}
# The first global each payload's pickle names (os.system lives in the posix module on Linux; the
# protocols before 4 reach a method through getattr).
FIRST_GLOBAL = {"system": ("posix.system",), "open": ("io.open",), "touch": ("getattr", "pathlib.Path.touch")}


def write_file(path: Path, obj, fmt: str) -> Path:
    """``obj`` in one of the containers users hold."""
    if fmt == "pth":
        torch.save(obj, path)
    elif fmt == "pth_legacy":  # torch < 1.6's format: a sequence of pickles, not a zip
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:  # a plain pickle, e.g. a Detectron2 .pkl
        path.write_bytes(pickle.dumps(obj, protocol=int(fmt[-1])))
    return path


def python2_detectron2_pickle() -> bytes:
    """What Python 2's cPickle (protocol 2) wrote for ``{"model": {"w": float32 [1.0, 2.0]},
    "__author__": "Detectron2"}``: str as SHORT_BINSTRING, numpy.core names (written by hand)."""
    raw = np.float32([1.0, 2.0]).tobytes()
    dtype = b"cnumpy\ndtype\nU\x02f4K\x00K\x01\x87R(K\x03U\x01<NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    array = (b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85U\x01b\x87R"
             b"(K\x01K\x02\x85" + dtype + b"\x89U" + bytes([len(raw)]) + raw + b"tb")
    return (b"\x80\x02}(U\x05model}U\x01w" + array + b"sU\n__author__U\nDetectron2u.")


def malicious(tmp_path: Path, name: str = "R-52.pkl", payload: str = "system", fmt: str = "pkl2") -> tuple[Path, Path]:
    """A weights-looking file with a payload beside real tensors, and the marker it would write."""
    marker = tmp_path / f"marker-{payload}-{fmt}"
    obj = {"model": {"conv1.weight": np.ones((2, 3), np.float32) if fmt.startswith("pkl") else torch.ones(2, 3)},
           "config": {}, "__author__": PAYLOADS[payload](marker)}
    return write_file(tmp_path / name, obj, fmt), marker


def assert_refused(error, path: Path, marker: Path) -> None:
    message = str(error.value)
    assert isinstance(error.value, UnsafeFileError) and isinstance(error.value, ValueError)
    assert str(path) in message and f"--trust-file {path}" in message and "\n" not in message
    assert not marker.exists(), "the payload ran"




# ---- crafted files that attack the reader itself (issue 28): no code of theirs, but numpy's and
# torch's own machinery turned against the process. Each is bytes, written by hand or by pickling
# objects whose __reduce__ says what the attacker wants pickle to do.
NUMPY_RECONSTRUCT = "numpy._core.multiarray\n_reconstruct\n"
THREE_GB = 3_000_000_000


class _Reduce:
    """Pickles as ``func(*args)`` followed by BUILD ``state`` (when given)."""

    def __init__(self, func, args, state=None):
        self.func, self.args, self.state = func, args, state

    def __reduce__(self):
        return (self.func, self.args) if self.state is None else (self.func, self.args, self.state)


def _reconstruct():
    from numpy._core.multiarray import _reconstruct
    return _reconstruct


def structured_dtype_array(protocol: int = 2) -> bytes:
    """A ``{"model": {"w": array}}`` whose dtype is a structured one with an object field while its flags
    say it holds no objects: numpy reads 16 bytes of the file (0x41...) as two object pointers."""
    fake_dtype = _Reduce(np.dtype, ("V8", False, True),
                         (3, "|", None, ("f",), {"f": (np.dtype("O"), 0)}, 8, 1, 0))
    array = _Reduce(_reconstruct(), (np.ndarray, (0,), b"b"), (1, (2,), fake_dtype, False, b"\x41" * 16))
    return pickle.dumps({"model": {"w": array}}, protocol=protocol)


def function_defaults_rewrite() -> bytes:
    """BUILD on an allow-listed numpy function: sets ``numeric._frombuffer.__defaults__`` for the whole
    process (slot state, as pickle applies it to objects without ``__setstate__``)."""
    return (b"\x80\x02cnumpy._core.numeric\n_frombuffer\nN}X\x0c\x00\x00\x00__defaults__"
            b"K\x07\x85s\x86b.")


def bytearray_3gb() -> bytes:
    """An 86-byte-class pickle asking for ``bytearray(3_000_000_000)``."""
    return b"\x80\x02c__builtin__\nbytearray\n\x8a\x05" + THREE_GB.to_bytes(5, "little") + b"\x85R."


def empty_huge_array() -> bytes:
    """An array of 3e9 zero-size (void) items: no bytes in the file, 3e9 elements in memory."""
    array = _Reduce(_reconstruct(), (np.ndarray, (0,), b"b"), (1, (THREE_GB,), np.dtype("V0"), False, ""))  # raw as a Python 2 str
    return pickle.dumps({"model": {"w": array}}, protocol=2)


def torch_zip_with_pickle(path: Path, data_pkl: bytes) -> Path:
    """A torch.save zip whose data.pkl is ``data_pkl`` (the other records as torch writes them)."""
    import zipfile

    torch.save({}, path)
    with zipfile.ZipFile(path) as archive:
        records = {info.filename: archive.read(info) for info in archive.infolist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in records.items():
            archive.writestr(name, data_pkl if name.endswith("/data.pkl") else data)
    return path


def legacy_torch_declaring(path: Path, numel: int = THREE_GB) -> Path:
    """A legacy torch.save file of one 3-element float tensor whose pickle declares ``numel`` elements."""
    torch.save({"w": torch.ones(3)}, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    declared = b"X\x03\x00\x00\x00cpuq\x06K\x03N"  # location 'cpu', memo 6, numel 3, no view
    assert data.count(declared) == 1
    return _write(path, data.replace(declared, b"X\x03\x00\x00\x00cpuq\x06\x8a\x05" + numel.to_bytes(5, "little") + b"N"))


def zip_bomb(path: Path, inflated: int = 64 << 20) -> Path:
    """A torch.save zip whose storage entry deflates to ``inflated`` bytes from a few dozen KiB."""
    import zipfile

    torch.save({"w": torch.zeros(inflated // 4)[:1]}, path)  # one storage of `inflated` bytes, as torch writes it
    with zipfile.ZipFile(path) as archive:
        records = {info.filename: archive.read(info) for info in archive.infolist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in records.items():
            archive.writestr(name, data)
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def rewrite_torch_zip(path: Path, old: bytes, new: bytes) -> Path:
    """``path`` (a torch.save zip) with ``old`` replaced by ``new`` once in its data.pkl."""
    import zipfile

    with zipfile.ZipFile(path) as archive:
        records = {info.filename: archive.read(info) for info in archive.infolist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for name, data in records.items():
            if name.endswith("/data.pkl"):
                assert data.count(old) == 1, (old, data)
                data = data.replace(old, new)
            archive.writestr(name, data)
    return path


def tensor_beyond_storage(path: Path) -> Path:
    """A tensor of 100 elements over its 3-element storage (torch: 'Trying to resize storage ...')."""
    torch.save({"w": torch.ones(3)}, path)
    return rewrite_torch_zip(path, b"K\x00K\x03\x85", b"K\x00Kd\x85")


def shared_buffer_arrays(copies: int = 64, nbytes: int = 1 << 20) -> bytes:
    """``copies`` numpy arrays over one ``nbytes`` byte string, stored once and referenced by the memo."""
    raw = bytes(nbytes)
    dtype = _Reduce(np.dtype, ("u1", False, True), (3, "|", None, None, None, -1, -1, 0))
    arrays = [_Reduce(_reconstruct(), (np.ndarray, (0,), b"b"), (1, (nbytes,), dtype, False, raw)) for _ in range(copies)]
    return pickle.dumps({"model": {f"w{i}": a for i, a in enumerate(arrays)}}, protocol=4)


def shared_list_sets(copies: int = 2000, items: int = 10_000) -> bytes:
    """``copies`` sets built from one shared list of ``items`` ints: memory grows as copies x items."""
    shared = list(range(items))
    return pickle.dumps([_Reduce(set, (shared,)) for _ in range(copies)], protocol=2)


def nested_lists(depth: int = 100_000) -> bytes:
    """Lists nested ``depth`` deep, in 2 bytes a level."""
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


def self_containing_list() -> bytes:
    """A list that contains itself (the memo's GET of the list being built)."""
    return b"\x80\x02]q\x00h\x00a."
