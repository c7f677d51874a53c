"""The rehearsal's notebook runs (``pna rehearse --papermill``): one row per dataset through its
notebook with ``profile='paper'``, 2 iterations of batch 2 on the official-format fixture, as a GPU
user launches it; the row must write its results JSON.

Example::

    >>> papermill_row("voc", "cpu", timeout=1500)["status"]   # doctest: +SKIP
    'ok'
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pna.configs import ROWS
from pna.paths import REPO_ROOT

# The row of each dataset that `make test` rehearses (cheapest refinement row), and the notebook
# that `--papermill` runs it through.
CI_ROWS = {"voc": "voc/fcn_r50_os32_pna", "cityscapes": "cityscapes/fpn_r52_pna",
           "cocostuff10k": "cocostuff10k/deeplabv3_r50_os16_pna", "deepglobe": "deepglobe/fpn_r52_pna",
           "trans10k": "trans10k/fpn_r52_pna"}
NOTEBOOKS = {"voc": "01_voc_ablation.ipynb", "cityscapes": "03_cityscapes.ipynb",
             "cocostuff10k": "06_cocostuff10k.ipynb", "deepglobe": "04_deepglobe.ipynb", "trans10k": "05_trans10k.ipynb"}


def papermill_row(dataset: str, device: str, timeout: float) -> dict:
    """Run one row of ``dataset`` through its notebook with ``profile='paper'`` (2 iterations)."""
    notebook, table = NOTEBOOKS[dataset], ROWS[CI_ROWS[dataset]].table
    row = CI_ROWS[dataset].split("/")[1]
    name = f"papermill {notebook} ({row})"
    with tempfile.TemporaryDirectory(prefix="pna-rehearse-nb-") as tmp:
        from pna.data.fixtures import write_fixture

        root = write_fixture(dataset, Path(tmp) / "data", num_train=2, num_eval=1)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PNA_RUNS_DIR": f"{tmp}/runs", "PNA_RESULTS_DIR": f"{tmp}/unused"}
        command = [sys.executable, "-m", "papermill", str(REPO_ROOT / "notebooks" / notebook), f"{tmp}/out.ipynb",
                   "--cwd", str(REPO_ROOT / "notebooks"), "--no-progress-bar", "-p", "profile", "paper",
                   "-p", "data_root", str(root), "-p", "device", device, "-p", "rows", row, "-p", "iters", "2",
                   "-p", "batch_size", "2", "-p", "workers", "0", "-p", "allow_random_init", "True",
                   "-p", "out_dir", f"{tmp}/results"]
        if notebook.startswith("01_"):
            command += ["-p", "window_rows", "[]"]
        start = time.perf_counter()
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
            written = sorted(p.name for p in (Path(tmp) / "results" / table).glob("*.paper.json"))
            ok = done.returncode == 0 and written == [f"{row}.paper.json"]
            error = "" if ok else f"exit {done.returncode}, wrote {written}: {done.stderr.strip().splitlines()[-1:]}"
        except subprocess.TimeoutExpired:
            ok, error = False, f"timed out after {timeout:.0f} s"
    return {"config": name, "device": device, "status": "ok" if ok else "failed", "error": error,
            "s_per_iter": "", "eval_s": round(time.perf_counter() - start, 1)}
