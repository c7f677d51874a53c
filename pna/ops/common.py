"""What the hand-written autograd paths of the neighbourhood attention share: the dtype they
compute in, and their behaviour under a jit trace (fvcore FLOP counting): silent, and not recorded.

Example:
    >>> import torch
    >>> compute_dtype(torch.bfloat16), compute_dtype(torch.float64)
    (torch.float32, torch.float64)
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Callable, Iterator

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


def untraced(compute: Callable[[], torch.Tensor], like: torch.Tensor) -> torch.Tensor:
    """``compute()``; during a jit trace, run with the tracer paused and handed back through one
    traced copy (a tensor on ``like``'s device). Why: the tracer records an autograd Function's
    forward op by op into its ``prim::PythonOp`` node's subgraph, and the slot loops' thousands of
    small ops made tracing a smoke PNA model for its FLOPs take about 10 s instead of 0.3 s; fvcore
    counts the node by its handle (:mod:`pna.ops.flops`) either way, and a traced module still runs
    the Function itself."""
    if not torch.jit.is_tracing():
        return compute()
    state = torch._C._get_tracing_state()
    torch._C._set_tracing_state(None)
    try:
        out = compute()
    finally:
        torch._C._set_tracing_state(state)
    return like.new_empty(out.shape, dtype=out.dtype).copy_(out)
