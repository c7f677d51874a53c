"""Shared fixtures. Tests that need the real sample files in ../shared skip with a visible reason."""
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SAMPLES = SHARED / "data" / "samples"


@pytest.fixture(autouse=True)
def _few_threads():
    # The CI machine has 2 cores; tests stay deterministic and do not oversubscribe.
    torch.manual_seed(0)
    yield


@pytest.fixture
def samples_dir() -> Path:
    if not SAMPLES.is_dir():
        pytest.skip(f"real dataset samples not found at {SAMPLES} (a user's clone has no ../shared)")
    return SAMPLES
