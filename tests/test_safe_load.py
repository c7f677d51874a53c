"""Weight and checkpoint files from elsewhere never run their code (pna.files): the loader.

Crafted files whose unpickling would write a marker file (``malicious_files``) are refused in every
container and the error names the file; genuine files of every supported format still load; a file
the user trusts by name is read with the unrestricted unpickler (the marker appears only then).
The entry points that read files (backbone weights, notebooks, the authors' models, resume,
evaluate) are in ``test_safe_load_entry_points.py``.
"""
import collections
import json
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from malicious_files import (FIRST_GLOBAL, PAYLOADS, SystemPayload, assert_refused, malicious,
                             python2_detectron2_pickle, write_file)
from pna.files import TRUST_ENV, UnsafeFileError, is_trusted, load_file, trusted_files, trusting

ROOT = Path(__file__).resolve().parents[1]


FORMATS = ["pkl2", "pkl4", "pkl5", "pth", "pth_legacy"]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_load_file_refuses_every_payload_in_every_format(tmp_path, payload, fmt):
    path, marker = malicious(tmp_path, "weights.bin", payload, fmt)
    with pytest.raises(UnsafeFileError) as error:
        load_file(path)
    assert_refused(error, path, marker)
    refused = re.search(r"refused to unpickle (\S+):", str(error.value)).group(1)
    assert refused.endswith(FIRST_GLOBAL[payload]), refused


def test_the_refusal_is_one_line_naming_the_file_and_the_type(tmp_path):
    path, marker = malicious(tmp_path, "R-52.pkl", "system", "pkl4")
    with pytest.raises(UnsafeFileError) as error:
        load_file(path)
    assert str(error.value).startswith(f"{path}: refused to unpickle posix.system: not a weights type")
    assert_refused(error, path, marker)


# ---- the opt-in -------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["pkl2", "pth"])
def test_a_trusted_file_is_read_unrestricted_and_only_then(tmp_path, monkeypatch, fmt):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    path, marker = malicious(tmp_path, "R-52.pkl", "open", fmt)
    with pytest.raises(UnsafeFileError):
        load_file(path)
    assert not marker.exists()
    with trusting([tmp_path / "." / path.name]):  # compared resolved
        with pytest.warns(UserWarning, match="trust this file"):
            loaded = load_file(path)
    assert marker.exists() and sorted(loaded) == ["__author__", "config", "model"]
    marker.unlink()
    assert TRUST_ENV not in os.environ  # the trust ended with the block
    with pytest.raises(UnsafeFileError):
        load_file(path)
    assert not marker.exists()
    monkeypatch.setenv(TRUST_ENV, os.pathsep.join(["/elsewhere/x.pth", str(path)]))  # how children get it
    with pytest.warns(UserWarning, match="trust this file"):
        load_file(path)
    assert marker.exists()


def test_trust_is_per_file_and_reaches_child_processes(tmp_path, monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    path, marker = malicious(tmp_path, "a.pkl")
    other, other_marker = malicious(tmp_path, "b.pkl", "open")
    with trusting([path]):
        with pytest.raises(UnsafeFileError):
            load_file(other)
        child = subprocess.run([sys.executable, "-c", "import sys; from pna.files import is_trusted; "
                                "print(is_trusted(sys.argv[1]), is_trusted(sys.argv[2]))", str(path), str(other)],
                               cwd=ROOT, capture_output=True, text=True, check=True)
    assert child.stdout.split() == ["True", "False"]
    assert not other_marker.exists() and not marker.exists()
    with pytest.raises(FileNotFoundError, match="trusted file not found: .*typo.pkl"):
        with trusting([tmp_path / "typo.pkl"]):
            pass


@pytest.mark.parametrize("name", ["a:evil.pkl", "a,evil.pkl", "a\nevil.pkl", 'a"evil.pkl'])
def test_a_path_holding_a_separator_is_trusted_exactly_and_nothing_else(tmp_path, monkeypatch, name):
    """``--trust-file 'w/a:evil.pkl'`` once trusted ``evil.pkl`` of the current folder, not the file named."""
    monkeypatch.delenv(TRUST_ENV, raising=False)
    (tmp_path / "w").mkdir()
    named, _ = malicious(tmp_path / "w", name)
    decoys = [malicious(tmp_path, "evil.pkl")[0], malicious(tmp_path / "w", "a")[0], malicious(tmp_path / "w", "evil.pkl")[0]]
    monkeypatch.chdir(tmp_path)
    with trusting([f"w/{name}"]):
        assert is_trusted(named) and not any(is_trusted(decoy) for decoy in decoys)
        assert trusted_files() == [named.resolve()]
        for decoy in decoys:
            with pytest.raises(UnsafeFileError):
                load_file(decoy)


def test_a_child_started_in_another_folder_sees_the_same_trusted_files(tmp_path, monkeypatch):
    monkeypatch.delenv(TRUST_ENV, raising=False)
    (tmp_path / "here").mkdir(), (tmp_path / "there").mkdir()
    for folder in ("here", "there"):
        malicious(tmp_path / folder, "R-52.pkl")
    monkeypatch.chdir(tmp_path / "here")
    with trusting(["R-52.pkl"]):  # said relative to here
        child = subprocess.run([sys.executable, "-c", "import json; from pna.files import trusted_files, is_trusted; "
                                "print(json.dumps([str(p) for p in trusted_files()])); print(is_trusted('R-52.pkl'))"],
                               cwd=tmp_path / "there", capture_output=True, text=True, check=True)
    trusted, there = child.stdout.splitlines()
    assert json.loads(trusted) == [str((tmp_path / "here" / "R-52.pkl").resolve())] and there == "False"


def test_a_hand_written_trust_list_must_be_absolute(tmp_path, monkeypatch):
    path, _ = malicious(tmp_path, "R-52.pkl")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(TRUST_ENV, "R-52.pkl")
    with pytest.raises(ValueError, match=f"^{TRUST_ENV} holds the relative path 'R-52.pkl': write absolute paths"):
        is_trusted(path)
    monkeypatch.setenv(TRUST_ENV, json.dumps([str(path)]))
    assert is_trusted("R-52.pkl")
    monkeypatch.setenv(TRUST_ENV, '["unclosed')
    with pytest.raises(ValueError, match=f"^{TRUST_ENV} is not a valid JSON list of paths"):
        is_trusted(path)


def test_trust_file_on_the_command_line(tmp_path, monkeypatch):
    from pna.cli import build_parser, dispatch
    from pna.engine.checkpoint import CheckpointError

    monkeypatch.delenv(TRUST_ENV, raising=False)
    args = build_parser().parse_args(["train", "--config", "x", "--trust-file", "a.pth", "--trust-file", "b.pkl"])
    assert args.trust_file == ["a.pth", "b.pkl"]
    marker = tmp_path / "marker"
    path = write_file(tmp_path / "final.pt", {"weights": torch.ones(2), "extra": SystemPayload(marker)}, "pth")
    with pytest.raises(UnsafeFileError) as error:
        dispatch(["evaluate", "--checkpoint", str(path)])
    assert_refused(error, path, marker)
    with pytest.warns(UserWarning, match="trust this file"), pytest.raises(CheckpointError, match="not a pna"):
        dispatch(["evaluate", "--checkpoint", str(path), "--trust-file", str(path)])
    assert marker.exists() and not is_trusted(path)


# ---- genuine files of every format --------------------------------------------------------------
STATE = {"stem.conv1.weight": np.arange(6, dtype=np.float32).reshape(2, 3), "res2.0.conv1.norm.bias": np.float32([1.5]),
         "count": np.int64(7), "flags": np.array([True, False])}


def test_a_python2_era_detectron2_pickle_loads(tmp_path):
    path = tmp_path / "R-52.pkl"
    path.write_bytes(python2_detectron2_pickle())
    loaded = load_file(path)
    assert loaded["__author__"] == "Detectron2"
    np.testing.assert_array_equal(loaded["model"]["w"], np.float32([1.0, 2.0]))
    assert loaded["model"]["w"].dtype == np.float32


@pytest.mark.parametrize("fmt", ["pkl2", "pkl4", "pkl5"])
def test_detectron2_pickles_of_numpy_arrays_load(tmp_path, fmt):
    obj = {"model": dict(STATE), "__author__": "Detectron2 DeepLab", "matching_heuristics": True}
    loaded = load_file(write_file(tmp_path / "R-52.pkl", obj, fmt))
    assert loaded["__author__"] == "Detectron2 DeepLab" and loaded["matching_heuristics"] is True
    for key, value in STATE.items():
        np.testing.assert_array_equal(loaded["model"][key], value)
        assert np.asarray(loaded["model"][key]).dtype == np.asarray(value).dtype


LAYOUTS = {"c": np.arange(6, dtype=np.float32).reshape(2, 3), "fortran_big_endian": np.asfortranarray(
    np.arange(6.0).reshape(2, 3).astype(">f8")), "big_endian": np.arange(6).astype(">i4"), "empty": np.zeros((0, 5), np.int16),
    "empty_big_endian": np.zeros((0, 2), ">f4"), "zero_d": np.array(3.5), "int64": np.int64(7), "bool": np.bool_(True),
    "complex64": np.complex64(1 + 2j), "float16": np.float16(3), "big_endian_scalar": np.array(5, ">i2")[()]}
PLAIN_VALUES = {"ordered": collections.OrderedDict(a=1), "set": {1, 2}, "frozenset": frozenset({3}), "complex": 1 + 2j,
                "bytearray": bytearray(b"xy"), "bytes": b"ab", "empty_bytes": b"", "list": [1, 2.5, None, "x"],
                "numpy_keys": {np.int64(3): 1, (1, "a"): 2}}


@pytest.mark.parametrize("protocol", range(6))
def test_every_layout_loads_as_numpy_itself_unpickles_it(tmp_path, protocol):
    """Reference: the unrestricted pickle.loads with numpy's own callables (the file is genuine)."""
    path = tmp_path / "R-52.pkl"
    path.write_bytes(pickle.dumps({"model": LAYOUTS, **PLAIN_VALUES}, protocol=protocol))
    loaded, reference = load_file(path), pickle.loads(path.read_bytes())
    for key, expected in reference["model"].items():
        got = loaded["model"][key]
        assert type(got) is type(expected) and np.asarray(got).dtype.str == np.asarray(expected).dtype.str, key
        assert np.asarray(got).shape == np.asarray(expected).shape and np.array_equal(got, expected), key
        assert np.asarray(got).flags.f_contiguous == np.asarray(expected).flags.f_contiguous, key
    for key in PLAIN_VALUES:
        assert type(loaded[key]) is type(reference[key]) and loaded[key] == reference[key], key


def test_torch_files_load_state_dicts_and_mmseg_containers(tmp_path):
    from pna.models.backbones.checkpoint_io import read_checkpoint

    state = {"conv1.weight": torch.randn(4, 3), "bn1.num_batches_tracked": torch.tensor(5)}
    mmseg = {"meta": {"mmseg_version": "0.27.0", "CLASSES": ("background", "aeroplane"), "PALETTE": [[0, 0, 0]],
                      "config": "model = dict(type='EncoderDecoder')", "iter": 20000, "best_mIoU": np.float64(0.75)},
             "state_dict": state, "optimizer": {"state": {}, "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.999)}]}}
    for name, obj, fmt in (("plain.pth", state, "pth"), ("mmseg.pth", mmseg, "pth"),
                           ("legacy.pth", mmseg, "pth_legacy")):
        read = read_checkpoint(write_file(tmp_path / name, obj, fmt))
        assert set(read) == set(state) and all(torch.equal(read[k], state[k]) for k in state), name
    assert load_file(tmp_path / "mmseg.pth")["meta"]["best_mIoU"] == 0.75
    save_file(state, str(tmp_path / "w.safetensors"))
    assert torch.equal(read_checkpoint(tmp_path / "w.safetensors")["conv1.weight"], state["conv1.weight"])


def test_no_other_module_unpickles():
    """Only pna/files/ (the reader) calls an unpickler; everything else (the package, data_prep,
    benchmarks, scripts) reads through it."""
    pattern = re.compile(r"torch\.load\(|pickle\.loads?\(|Unpickler\(|weights_only\s*=\s*False|np\.load\(")
    sources = [path for folder in ("pna", "data_prep", "benchmarks", "scripts") for path in sorted((ROOT / folder).rglob("*.py"))]
    assert len(sources) > 100, "the scan found too few files to mean anything"
    found = [f"{path.relative_to(ROOT)}:{i}" for path in sources
             for i, line in enumerate(path.read_text().splitlines(), 1)
             if pattern.search(line) and path.relative_to(ROOT).parent.as_posix() != "pna/files"]
    assert found == []
