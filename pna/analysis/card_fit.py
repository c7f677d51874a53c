"""Which row fits which card: peak memory per micro-batch, estimated from a measured table, and the
split of the authors' batch (processes x micro-batch x accumulation) that would fit (``pna plan``).

The estimate of one process holding ``m`` images is ``state + m x per_image + reserve``:

* ``state``: the weights, their gradients and AdamW's two moments, 16 bytes per parameter
  (fp32 x 4; parameters from ``results/cost/all_models.csv``);
* ``per_image``: from the rehearsal's measured peak at batch 2 (``results/rehearsal/<device>.csv``):
  ``(peak - baseline - state) / 2``;
* ``reserve``: :data:`CUDA_RESERVE_MB` for the CUDA context and the allocator's cache, which CUDA's
  max-allocated figure does not count.

``results/rehearsal/cuda.csv`` (CUDA max allocated, AMP fp16) is used where a GPU has measured it;
otherwise the CPU rehearsal's figures, with their caveat: CPU RSS is not GPU memory (fp32 activations
where the GPU keeps many in fp16; the peak also covers the evaluation at the paper's test size and
the process's own libraries, less :data:`CPU_BASELINE_MB`), so read them as an upper bound.

Example::

    >>> fp = Footprint("row", "cpu", state_mb=1000.0, per_image_mb=500.0)
    >>> round(fp.peak_mb(4)), choose_split(fp, batch=16, gpus=1, gpu_mem_gb=8).text()
    (4024, '1 process(es) x 8 images x 2 accumulation steps = 16')
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pna.configs import ROWS, list_configs, load_config
from pna.engine.batch_split import BatchSplit, mining_chunk, plan_split
from pna.paths import REPO_ROOT

BYTES_PER_PARAM = 16        # fp32 weight + gradient + AdamW exp_avg + exp_avg_sq
# RSS of a process after `import torch, pna.engine.train, pna.data, pna.models` on this machine
# (measured: 744 MB): in the CPU rehearsal's peak, but no part of what a GPU holds.
CPU_BASELINE_MB = 740
CUDA_RESERVE_MB = 1024      # CUDA context (~0.5 GB) and allocator cache beyond max_memory_allocated
HEADROOM = 0.9              # plan to use at most this share of the card (fragmentation, eval spikes)
MEASURED_BATCH = 2          # the rehearsal's batch
SOURCES = {"cuda": "CUDA max allocated at batch 2 (AMP fp16), results/rehearsal/cuda.csv",
           "cpu": "CPU RSS at batch 2 (fp32), results/rehearsal/cpu.csv: CPU RSS is not GPU memory, an upper bound"}


@dataclass(frozen=True)
class Footprint:
    """What one process of a row holds: ``state_mb`` whatever the batch, ``per_image_mb`` per image."""

    config: str
    source: str
    state_mb: float
    per_image_mb: float

    def peak_mb(self, images: int) -> float:
        return self.state_mb + images * self.per_image_mb + CUDA_RESERVE_MB


def measured_table(root: Path = REPO_ROOT) -> tuple[str, dict[str, float]]:
    """(source, {config: peak MB at batch 2}) from the CUDA rehearsal if there is one, else the CPU's."""
    for source in ("cuda", "cpu"):
        path = root / "results" / "rehearsal" / f"{source}.csv"
        if path.is_file():
            with open(path, newline="") as f:
                lines = [x for x in csv.DictReader(f) if x["status"] == "ok" and x["config"] in ROWS and x["peak_mb"]]
            return source, {x["config"]: float(x["peak_mb"]) for x in lines}
    raise FileNotFoundError(f"no rehearsal table in {root / 'results' / 'rehearsal'}: run `pna rehearse` first")


def footprints(root: Path = REPO_ROOT) -> dict[str, Footprint]:
    """The :class:`Footprint` of every measured row."""
    source, peaks = measured_table(root)
    with open(root / "results" / "cost" / "all_models.csv", newline="") as f:
        params = {x["model"]: float(x["params_m"]) * 1e6 for x in csv.DictReader(f)}
    baseline = CPU_BASELINE_MB if source == "cpu" else 0.0
    out = {}
    for config, peak in peaks.items():
        model = ROWS[config].model
        if model not in params:
            continue
        state = params[model] * BYTES_PER_PARAM / 2 ** 20
        out[config] = Footprint(config, source, state, max(0.0, (peak - baseline - state) / MEASURED_BATCH))
    return out


def choose_split(fp: Footprint, batch: int, gpus: int, gpu_mem_gb: float, chunk: int | None = None) -> BatchSplit | None:
    """The largest micro-batch (a multiple of ``chunk`` when set) whose estimate fits ``gpu_mem_gb``
    x :data:`HEADROOM`; None when none does."""
    share = plan_split(batch, gpus).per_process
    sizes = [m for m in range(share, 0, -1) if share % m == 0 and not (chunk and share % chunk == 0 and m % chunk)]
    for m in sizes:
        if fp.peak_mb(m) <= gpu_mem_gb * 1024 * HEADROOM:
            return plan_split(batch, gpus, m)
    return None


def plan_table(gpu_mems: list[float], gpus: int = 1, configs: list[str] | None = None,
               root: Path = REPO_ROOT) -> pd.DataFrame:
    """One line per paper row: state and per-image GB, and per card size the split
    ``micro-batch x accumulation`` on ``gpus`` GPU(s) of the authors' batch ("-": does not fit)."""
    prints = footprints(root)
    lines = []
    for name in configs or [c for c in list_configs() if c in prints]:
        if name not in prints:
            raise ValueError(f"{name}: no measured peak memory in the rehearsal table; run `pna rehearse --rows {name}`")
        cfg, fp = load_config(name, "paper"), prints[name]
        line = {"config": name, "batch": cfg.train.batch_size, "state_GB": round(fp.state_mb / 1024, 1),
                "per_image_GB": round(fp.per_image_mb / 1024, 2)}
        for mem in gpu_mems:
            split = choose_split(fp, cfg.train.batch_size, gpus, mem, mining_chunk(cfg))
            line[f"{mem:g} GB"] = f"{split.micro_batch}x{split.accumulation}" if split else "-"
        lines.append(line)
    return pd.DataFrame(lines).set_index("config")
