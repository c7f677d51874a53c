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


