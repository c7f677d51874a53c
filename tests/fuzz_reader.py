"""Coverage-guided fuzzing of the weights reader (atheris, libFuzzer): ``python tests/fuzz_reader.py [libFuzzer flags] CORPUS``.

Each input is written to a file and read by ``pna.files.load_file`` and by the safetensors reader
(``checkpoint_io.read_safetensors``). An input passes when each reader either loads data only (checked
here independently of the reader's own walk: containers, numbers, strings, numeric numpy arrays and
scalars, dense tensors) or raises one of our one-line errors (UnsafeFileError, DamagedFileError)
naming the file; anything else fails: another exception, a message without the file or on several
lines, a MemoryError behind a DamagedFileError (the size bound let an allocation through), a numpy
function changed for the process. libFuzzer catches what no exception shows: segfaults, hangs
(``-timeout``) and memory blow-ups (``-rss_limit_mb``); crashing inputs are written as ``crash-*`` files.

``--seeds FOLDER [flags]`` first writes the seed corpus there (valid files of every format read, the
crafted files of ``malicious_files``), ``--dict FILE`` writes the pickle-opcode dictionary and exits.
The process may not grow its address space by more than :data:`EXTRA_ADDRESS_SPACE`.
``FUZZ_STATS=file.json`` makes the target count outcomes by kind (written every 500 inputs).
"""
import collections
import json
import os
import pickletools
import re
import resource
import sys
import tempfile
import warnings
from pathlib import Path

import atheris

# Coverage feedback from the pure-Python pickle machinery and the reader; torch itself stays
# uninstrumented (instrumenting it takes minutes and its unpickler is reached through our first pass).
with atheris.instrument_imports(include=["pickle", "zipfile"]):
    import pickle  # noqa: F811
    import zipfile  # noqa: F401
import numpy as np
import torch
from numpy._core import numeric

with atheris.instrument_imports(include=["pna.files"]):
    from pna.files import DamagedFileError, UnsafeFileError, load_file
from pna.models.backbones.checkpoint_io import read_safetensors

sys.path.insert(0, str(Path(__file__).resolve().parent))
import malicious_files as files  # noqa: E402

WORK = Path(tempfile.gettempdir()) / f"fuzz_reader-{os.getpid()}"  # made on the first input, not on import
PICKLE_PATH, SAFETENSORS_PATH = WORK / "input.pth", WORK / "input.safetensors"
SENTINELS = (numeric._frombuffer, np.frombuffer, np.dtype)  # their defaults must stay the process's
DEFAULTS = [getattr(f, "__defaults__", None) for f in SENTINELS]
DATA_TYPES = (type(None), bool, int, float, complex, str, bytes, bytearray, torch.dtype, torch.device,
              torch.layout, torch.memory_format)
CONTAINERS = (dict, collections.OrderedDict, collections.Counter, list, tuple, torch.Size, set, frozenset)
STATS_EVERY = 500
EXTRA_ADDRESS_SPACE = 2 << 30  # beyond what the process holds after importing torch: 2 GiB, 2,000 times the seeds
stats: collections.Counter = collections.Counter()


def _assert_data_only(obj) -> None:
    """Every object reachable from ``obj`` is a data type (iterative: the reader refuses deep nesting)."""
    stack, seen = [obj], set()
    while stack:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        kind = type(item)
        if kind in DATA_TYPES:
            continue
        if kind in CONTAINERS:
            stack.extend(item.items() if isinstance(item, dict) else item)
        elif kind is np.ndarray or isinstance(item, np.generic):
            assert item.dtype.kind in "biufc" and not item.dtype.hasobject, item.dtype
        elif kind in (torch.Tensor, torch.nn.Parameter):
            assert item.layout is torch.strided
        else:
            raise AssertionError(f"the reader returned a {kind!r}")


def _kind(message: str, path: Path) -> str:
    """The refusal's kind: its message without the file, numbers and quoted names."""
    text = message[len(str(path)) + 2:].split(" (no weights file")[0].split(" (a weights file")[0]
    text = re.sub(r"^refused to unpickle .*?: not a weights type.*", "refused to unpickle _: not a weights type", text)
    text = re.sub(r"'[^']*'|\"[^\"]*\"|<[^>]*>|0x[0-9a-f]+|[\d,]+", "_", text)
    return text[:120]


def _read(reader, path: Path) -> None:
    try:
        _assert_data_only(reader(path))
        stats["loaded"] += 1
    except (UnsafeFileError, DamagedFileError) as error:
        message = str(error)
        assert message.startswith(f"{path}: ") and len(message.splitlines()) == 1, message
        assert "MemoryError" not in message, message  # the size bound let an allocation through
        stats[f"{path.suffix[1:]}: {_kind(message, path)}"] += 1


def TestOneInput(data: bytes) -> None:
    WORK.mkdir(exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path, reader in ((PICKLE_PATH, load_file), (SAFETENSORS_PATH, read_safetensors)):
            path.write_bytes(data)
            _read(reader, path)
    assert [getattr(f, "__defaults__", None) for f in SENTINELS] == DEFAULTS, "a numpy function was changed"
    stats["inputs"] += 1
    if os.environ.get("FUZZ_STATS") and stats["inputs"] % STATS_EVERY == 0:
        Path(os.environ["FUZZ_STATS"]).write_text(json.dumps(stats, indent=1))


# ---- the seed corpus and the dictionary ----------------------------------------------------------------
def _seeds(folder: Path) -> None:
    from safetensors.torch import save_file

    state = {"conv1.weight": torch.randn(4, 3, 3, 3), "bn1.num_batches_tracked": torch.tensor(5)}
    mmseg = {"meta": {"mmseg_version": "0.27.0", "CLASSES": ("background", "cat"), "iter": 20},
             "state_dict": state, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999)}]}}
    d2 = {"model": {"stem.conv1.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "count": np.int64(7),
                    "fortran": np.asfortranarray(np.ones((2, 3), ">f8"))}, "__author__": "Detectron2"}
    torch.save(state, folder / "torch_zip")
    torch.save(mmseg, folder / "mmseg_zip")
    torch.save(mmseg, folder / "legacy", _use_new_zipfile_serialization=False)
    for protocol in (0, 2, 4, 5):
        (folder / f"detectron2_p{protocol}").write_bytes(pickle.dumps(d2, protocol=protocol))
    (folder / "detectron2_python2").write_bytes(files.python2_detectron2_pickle())
    save_file({k: v for k, v in state.items()}, str(folder / "safetensors"))
    crafted = {"structured_dtype": files.structured_dtype_array(), "defaults": files.function_defaults_rewrite(),
               "bytearray": files.bytearray_3gb(), "void_items": files.empty_huge_array(),
               "shared_arrays": files.shared_buffer_arrays(copies=3, nbytes=64), "cycle": files.self_containing_list(),
               "sets": files.shared_list_sets(copies=3, items=10), "nested": files.nested_lists(depth=80)}
    for name, data in crafted.items():
        (folder / name).write_bytes(data)
    files.legacy_torch_declaring(folder / "legacy_declaring")
    files.tensor_beyond_storage(folder / "beyond_storage")
    files.zip_bomb(folder / "zip_bomb", inflated=1 << 16)
    for payload in sorted(files.PAYLOADS):
        for fmt in ("pkl2", "pth", "pth_legacy"):
            files.malicious(folder, f"{payload}_{fmt}", payload, fmt)
    for marker in folder.glob("marker-*"):
        marker.unlink()


def _dictionary(path: Path) -> None:
    """libFuzzer's dictionary: every pickle opcode, the globals weights pickles name, container magics."""
    tokens = sorted({op.code.encode("latin1") for op in pickletools.opcodes})
    names = ["numpy\ndtype", "numpy\nndarray", "numpy.core.multiarray\n_reconstruct", "numpy._core.multiarray\nscalar",
             "numpy._core.numeric\n_frombuffer", "__builtin__\nbytearray", "__builtin__\nset", "_codecs\nencode",
             "collections\nOrderedDict", "torch._utils\n_rebuild_tensor_v2", "torch\nFloatStorage", "posix\nsystem"]
    tokens += [b"c" + name.encode() + b"\n" for name in names]
    tokens += [b"PK\x03\x04", b"PK\x01\x02", b"PK\x05\x06", b"storage", b"cpu", b'"dtype":"F32"', b'"data_offsets":[0,',
               b"\x80\x02", b"\x80\x05", b"\x95"]
    path.write_text("".join('"' + "".join("\\x%02x" % b for b in token) + '"\n' for token in tokens))


def _limit_memory(extra: int = EXTRA_ADDRESS_SPACE) -> None:
    """Any allocation beyond ``extra`` bytes fails (MemoryError), even one whose pages are never touched."""
    size = int(re.search(r"VmSize:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size + extra, size + extra))


if __name__ == "__main__":
    argv = list(sys.argv)
    if argv[1:2] == ["--dict"]:
        _dictionary(Path(argv[2]))
        sys.exit(0)
    if argv[1:2] == ["--seeds"]:  # --seeds FOLDER [libFuzzer arguments...]: write the seeds, then fuzz them
        corpus = Path(argv[2])
        corpus.mkdir(parents=True, exist_ok=True)
        _seeds(corpus)
        argv = argv[:1] + argv[3:] + [str(corpus)]
    _limit_memory()
    atheris.Setup(argv, TestOneInput)
    atheris.Fuzz()
