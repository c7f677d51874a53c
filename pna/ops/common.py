"""What the hand-written autograd paths of the neighbourhood attention share: the dtype they
compute in and silence for the tracer.

Example:
    >>> import torch
    >>> compute_dtype(torch.bfloat16), compute_dtype(torch.float64)
    (torch.float32, torch.float64)
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Iterator

import torch


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """Half-precision inputs (autocast) are computed in float32: the window sums and softmax lose
    too much in 16 bits; float32 and float64 are kept."""
    return torch.float32 if dtype in (torch.bfloat16, torch.float16) else dtype


@contextlib.contextmanager
def quiet_tracer() -> Iterator[None]:
    """Silence jit TracerWarnings inside the autograd Functions: in a trace (fvcore FLOP counting)
    they are opaque ``prim::PythonOp`` nodes whose shape-dependent Python loops rerun on every call."""
    with warnings.catch_warnings():
        if torch.jit.is_tracing():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
        yield
