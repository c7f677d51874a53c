"""What the run-lock and pre-flight tests share: a smoke config small enough to train in seconds on a
CPU, and a fixture that keeps runs/ and results/ inside the test's own folder."""
from pathlib import Path

import pytest

ROW = "voc/fcn_r50_os32_pna"


def tiny(cache: Path, iters: int = 1) -> list[str]:
    """``--set`` pairs: 8 training images of 32 x 32 in ``cache``, a 32-wide model, a log line per iteration."""
    return [f"data.root={str(cache)!r}", "data.options={'num_train': 8, 'num_val': 2, 'size': 32, 'seed': 0}",
            "data.crop=(32, 32)", f"train.iters={iters}", "train.batch_size=4", "train.checkpoint_interval=0",
            "train.log_interval=1", "train.eval_interval=0", "model.overrides.embed_dims=(32, 32, 32, 32)",
            "model.overrides.head_channels=16", "model.overrides.aux_channels=16", "model.overrides.window_size=3"]


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PNA_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("PNA_RESULTS_DIR", str(tmp_path / "results"))
    return tmp_path
