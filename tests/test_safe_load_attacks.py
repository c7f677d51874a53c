"""Crafted files that attack the reader itself (issue 28), each refused with one line naming the file.

No payload of theirs runs; they turn numpy's and torch's own machinery against the process: a
structured dtype whose object field reads file bytes as pointers (a segfault), BUILD on an
allow-listed function (rewrites it for the whole process), allocations far beyond the file
(3 GB bytearray, 3e9-element arrays, legacy storages, zip bombs, safetensors headers). The crashing
and allocating cases run in a child process: a segfault or a memory limit fails the test instead of
killing pytest. The builders live in ``malicious_files``.
"""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import malicious_files as crafted
from pna.files import DamagedFileError, UnsafeFileError, load_file

ROOT = Path(__file__).resolve().parents[1]
SIGSEGV_EXIT = -11  # subprocess's returncode for a child killed by signal 11
CHILD_MEMORY = 512 << 20  # address space the child may add after importing torch: far below every attack


def _child(code: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def _assert_one_line(error, path: Path, kind=UnsafeFileError) -> str:
    message = str(error.value)
    assert isinstance(error.value, kind) and isinstance(error.value, ValueError)
    assert message.startswith(f"{path}: ") and "\n" not in message, message
    return message


# ---- 1. a structured dtype with an object field: numpy would read the file's bytes as pointers ---------
LOAD_AND_TOUCH = """
    import sys
    from pna.files import load_file
    try:
        loaded = load_file(sys.argv[1])
        print("loaded", repr(loaded))  # reading the array's items dereferences the fake pointers
    except ValueError as error:
        print(type(error).__name__, error)
"""


@pytest.mark.parametrize("container", ["pkl", "torch_zip"])
def test_a_structured_dtype_holding_objects_is_refused_not_a_segfault(tmp_path, container):
    path = tmp_path / "R-52.pkl"
    if container == "pkl":
        path.write_bytes(crafted.structured_dtype_array())
    else:
        crafted.torch_zip_with_pickle(path, crafted.structured_dtype_array())
    child = _child(LOAD_AND_TOUCH, str(path))
    assert child.returncode != SIGSEGV_EXIT, "the file crashed the process (segfault)"
    assert child.returncode == 0, child.stderr[-2000:]
    assert child.stdout.startswith(f"UnsafeFileError {path}: refused: numpy dtype 'V8'"), child.stdout


# ---- 2. BUILD applied to an allow-listed function --------------------------------------------------------
@pytest.mark.parametrize("container", ["pkl", "torch_zip"])
def test_build_on_a_function_is_refused_and_the_function_is_unchanged(tmp_path, container):
    from numpy._core import numeric

    before = numeric._frombuffer.__defaults__
    path = tmp_path / "R-52.pkl"
    if container == "pkl":
        path.write_bytes(crafted.function_defaults_rewrite())
    else:
        crafted.torch_zip_with_pickle(path, crafted.function_defaults_rewrite())
    try:
        with pytest.raises(UnsafeFileError) as error:
            load_file(path)
        after = numeric._frombuffer.__defaults__
    finally:
        numeric._frombuffer.__defaults__ = before  # repair the process if the reader let it through
    assert after == before
    assert "setting the state of a function" in _assert_one_line(error, path)


# ---- 3. allocations beyond the file, under a memory limit ------------------------------------------------
LOAD_UNDER_A_MEMORY_LIMIT = """
    import re, resource, sys, time
    from pna.files import load_file
    size = int(re.search(r"VmSize:\\s+(\\d+)", open("/proc/self/status").read()).group(1)) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size + int(sys.argv[1]), size + int(sys.argv[1])))
    for path in sys.argv[2:]:
        try:
            load_file(path)
            print("loaded", path)
        except (ValueError, MemoryError) as error:
            print(type(error).__name__, error)
"""


def test_allocations_beyond_the_file_are_refused_before_they_happen(tmp_path):
    files = {"bytearray": (tmp_path / "bytearray.pkl", "asks for 3e9 bytes: bytearray(3e9)"),
             "empty": (tmp_path / "empty.pkl", "3e9 zero-size items"),
             "legacy": (crafted.legacy_torch_declaring(tmp_path / "legacy.pth"), "a storage of 3e9 floats"),
             "bomb": (crafted.zip_bomb(tmp_path / "bomb.pth"), "a 64 MiB entry deflated")}
    files["bytearray"][0].write_bytes(crafted.bytearray_3gb())
    files["empty"][0].write_bytes(crafted.empty_huge_array())
    child = _child(LOAD_UNDER_A_MEMORY_LIMIT, str(CHILD_MEMORY), *(str(path) for path, _ in files.values()))
    assert child.returncode == 0, child.stderr[-2000:]
    lines = dict(zip(files, child.stdout.splitlines()))
    assert set(lines) == set(files), child.stdout
    for name, (path, _) in files.items():
        assert lines[name].startswith(f"UnsafeFileError {path}: refused: "), lines[name]
    assert "bytearray of a int" in lines["bytearray"]
    assert "numpy dtype 'V0'" in lines["empty"]
    assert "12,000,000,000 bytes" in lines["legacy"] and "beyond the bound of" in lines["legacy"]
    assert "is compressed" in lines["bomb"]


def test_shared_buffers_and_lists_cannot_multiply_the_file(tmp_path):
    """One 1 MiB buffer under 64 arrays, one list under 2,000 sets: each refused at the bound."""
    arrays, sets = tmp_path / "arrays.pkl", tmp_path / "sets.pkl"
    arrays.write_bytes(crafted.shared_buffer_arrays())
    sets.write_bytes(crafted.shared_list_sets())
    for path, what in ((arrays, "numpy arrays"), (sets, "a set of 10,000 items")):
        with pytest.raises(UnsafeFileError) as error:
            load_file(path)
        bound = path.stat().st_size + (1 << 20)
        assert f"it asks for {what}" in _assert_one_line(error, path) and f"bound of {bound:,} bytes" in str(error.value)


def test_cycles_and_deep_nesting_are_refused(tmp_path):
    for name, data, expected in (("cycle.pkl", crafted.self_containing_list(), "a list that contains itself"),
                                 ("deep.pkl", crafted.nested_lists(), "nested more than 64 deep")):
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(UnsafeFileError) as error:
            load_file(path)
        assert expected in _assert_one_line(error, path)


# ---- 4. safetensors -----------------------------------------------------------------------------------
def _safetensors(path: Path, header: dict | bytes, data: bytes, declared: int | None = None) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes((len(raw) if declared is None else declared).to_bytes(8, "little") + raw + data)
    return path


def test_safetensors_headers_and_extents_beyond_the_file_are_refused(tmp_path):
    from pna.models.backbones.checkpoint_io import read_checkpoint

    tensor = {"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}}
    good = _safetensors(tmp_path / "good.safetensors", tensor, np.float32([1, 2, 3]).tobytes())
    assert torch.equal(read_checkpoint(good)["w"], torch.tensor([1.0, 2.0, 3.0]))
    cases = {"header": (_safetensors(tmp_path / "header.safetensors", tensor, bytes(12), declared=10**12),
                        UnsafeFileError, "its header declares 1,000,000,000,000 bytes"),
             "extent": (_safetensors(tmp_path / "extent.safetensors",
                                     {"w": {"dtype": "F32", "shape": [10**9], "data_offsets": [0, 4 * 10**9]}},
                                     bytes(12)), UnsafeFileError, "declares bytes 0..4,000,000,000 of the 12"),
             "utf8": (_safetensors(tmp_path / "utf8.safetensors", b"\x80\x81\x82", b""), DamagedFileError,
                      "not utf-8 text")}
    for path, kind, expected in cases.values():
        with pytest.raises(kind) as error:
            read_checkpoint(path)
        assert expected in _assert_one_line(error, path, kind)


# ---- 5. damaged files and torch's own refusals: one line, the whole cause ---------------------------------
def test_damaged_files_are_one_line_naming_the_file_and_the_cause(tmp_path):
    torch.save({"w": torch.ones(1000)}, tmp_path / "whole.pth")
    whole = (tmp_path / "whole.pth").read_bytes()
    cases = {"beyond.pth": (crafted.tensor_beyond_storage(tmp_path / "beyond.pth"), "Trying to resize storage"),
             "cut.pth": (crafted._write(tmp_path / "cut.pth", whole[: len(whole) // 2]), "BadZipFile"),
             "eof.pkl": (crafted._write(tmp_path / "eof.pkl", b"\x80\x02}q\x00(X\x01"), "it ends in the middle"),
             "text.pkl": (crafted._write(tmp_path / "text.pkl", b"\x80\x02X\x02\x00\x00\x00\x80\x81."),
                          "bytes that are not utf-8 text where the file says text (byte 0x80")}
    for path, expected in cases.values():
        with pytest.raises(DamagedFileError) as error:
            load_file(path)
        assert expected in _assert_one_line(error, path, DamagedFileError), str(error.value)


def test_torch_refusals_name_the_whole_refused_thing(tmp_path):
    """torch's restricted unpickler refusals, which the old pattern cut at the first dot ('but got <class 'numpy')."""
    layout_state = b"\x80\x02ctorch.serialization\n_get_layout\nX\r\x00\x00\x00torch.strided\x85R}b."
    path = crafted.torch_zip_with_pickle(tmp_path / "layout.pth", layout_state)  # BUILD on a torch.layout
    with pytest.raises(UnsafeFileError) as error:
        load_file(path)
    assert "but got <class 'torch.layout'> (no weights file" in _assert_one_line(error, path)
    path = crafted.torch_zip_with_pickle(tmp_path / "dtype.pth", b"\x80\x02cnumpy.dtypes\nFloat32DType\n.")
    with pytest.raises(UnsafeFileError) as error:
        load_file(path)
    assert "refused to unpickle numpy.dtypes.Float32DType: not a weights type" in _assert_one_line(error, path)
