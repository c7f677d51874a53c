"""Seeds and deterministic kernels of a training process (``train.seed``, ``train.deterministic``).

Example::

    >>> import torch
    >>> seed_everything(3); a = torch.rand(1)
    >>> seed_everything(3); bool(torch.equal(a, torch.rand(1)))
    True
"""
from __future__ import annotations

import os
import random

import numpy as np
import torch

# Re-seeding on a resume with another world size: a prime stride keeps the streams of different
# (rank, iteration) pairs apart.
RESEED_STRIDE = 7919


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


def make_deterministic(device: torch.device) -> bool:
    """Deterministic kernels for this process (``train.deterministic``). On CUDA: cuBLAS's fixed
    workspace, cuDNN without autotuning, ``torch.use_deterministic_algorithms`` with a warning (not an
    error) where an op has no deterministic kernel. CPU kernels used here are deterministic already.
    Returns whether anything was changed (CUDA)."""
    if device.type != "cuda":
        return False
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by deterministic cuBLAS
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)
    return True
