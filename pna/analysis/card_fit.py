"""Which row fits which card (``pna plan``): what the GPU rehearsal measured at the authors' per-GPU
batch against 24 / 40 / 80 GB cards (:func:`fit_table`), and, for any card and GPU count, the peak
memory per micro-batch estimated from the measured table with the split of the authors' batch
(processes x micro-batch x accumulation) that would fit (:func:`choose_split`, :func:`plan_table`).

The estimate of one process holding ``m`` images is ``state + m x per_image + reserve``:

* ``state``: the weights, their gradients and AdamW's two moments, 16 bytes per parameter
  (fp32 x 4; parameters from ``results/cost/all_models.csv``);
* ``per_image``: from the rehearsal's measured peak at the batch it ran (``results/rehearsal/<device>.csv``,
  its ``batch`` column: 2 in the CPU rehearsal, the authors' per-GPU batch in ``scripts/gpu_check.sh``):
  ``(peak - baseline - state) / batch``, the peak being the caching allocator's ``reserved_mb`` where
  the table has it;
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
from typing import Iterable, Sequence

import pandas as pd

from pna.analysis.report import markdown_table
from pna.configs import ROWS, list_configs, load_config
from pna.engine.batch_split import BatchSplit, mining_chunk, plan_split
from pna.paths import REPO_ROOT

BYTES_PER_PARAM = 16        # fp32 weight + gradient + AdamW exp_avg + exp_avg_sq
# RSS of a process after `import torch, pna.engine.train, pna.data, pna.models` on this machine
# (measured: 744 MB): in the CPU rehearsal's peak, but no part of what a GPU holds.
CPU_BASELINE_MB = 740
CUDA_RESERVE_MB = 1024      # CUDA context (~0.5 GB) and allocator cache beyond max_memory_allocated
HEADROOM = 0.9              # plan to use at most this share of the card (fragmentation, eval spikes)
CARDS_GB = (24, 40, 80)     # the usual sizes: RTX 3090 / 4090 / A5000, A100 40 GB, A100 / H100 80 GB
SOURCES = {"cuda": "CUDA memory held at the rehearsal's batch (AMP fp16), results/rehearsal/cuda.csv",
           "cpu": "CPU RSS at the rehearsal's batch (fp32), results/rehearsal/cpu.csv: CPU RSS is not GPU memory, "
                  "an upper bound"}


@dataclass(frozen=True)
class Footprint:
    """What one process of a row holds: ``state_mb`` whatever the batch, ``per_image_mb`` per image."""

    config: str
    source: str
    state_mb: float
    per_image_mb: float

    def peak_mb(self, images: int) -> float:
        return self.state_mb + images * self.per_image_mb + CUDA_RESERVE_MB


def _number(text) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _held_mb(line: dict) -> float | None:
    """What a rehearsal row held at its peak: the CUDA caching allocator's reserve where measured
    (what the card must have), else the peak the table records."""
    return _number(line.get("reserved_mb")) or _number(line.get("peak_mb"))


def measured_table(root: Path = REPO_ROOT) -> tuple[str, dict[str, tuple[float, int]]]:
    """(source, {config: (peak MB, batch it ran)}) from the CUDA rehearsal if there is one, else the CPU's."""
    for source in ("cuda", "cpu"):
        path = root / "results" / "rehearsal" / f"{source}.csv"
        if path.is_file():
            with open(path, newline="") as f:
                lines = [x for x in csv.DictReader(f) if x["status"] == "ok" and x["config"] in ROWS and _held_mb(x)]
            return source, {x["config"]: (_held_mb(x), int(_number(x.get("batch")) or 2)) for x in lines}
    raise FileNotFoundError(f"no rehearsal table in {root / 'results' / 'rehearsal'}: run `pna rehearse` first")


def footprints(root: Path = REPO_ROOT) -> dict[str, Footprint]:
    """The :class:`Footprint` of every measured row."""
    source, peaks = measured_table(root)
    with open(root / "results" / "cost" / "all_models.csv", newline="") as f:
        params = {x["model"]: float(x["params_m"]) * 1e6 for x in csv.DictReader(f)}
    baseline = CPU_BASELINE_MB if source == "cpu" else 0.0
    out = {}
    for config, (peak, batch) in peaks.items():
        model = ROWS[config].model
        if model not in params:
            continue
        state = params[model] * BYTES_PER_PARAM / 2 ** 20
        out[config] = Footprint(config, source, state, max(0.0, (peak - baseline - state) / batch))
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


def _verdict(line: dict, card_mb: float) -> str:
    status = line.get("status") if line.get("device", "cuda") == "cuda" else "not a GPU run"
    if status == "ok":
        held = _held_mb(line)
        return "?" if held is None else "yes" if held + CUDA_RESERVE_MB <= card_mb else "no"
    tested = _number(line.get("gpu_total_mb"))
    if status == "oom" and tested is not None and card_mb <= tested:
        return "no"
    return "?"


def fit_table(source: str | Path | Iterable[dict], cards_gb: Sequence[int] = CARDS_GB) -> list[dict]:
    """What the rehearsal measured, without estimates: one dict per row of the rehearsal table
    ``source`` (a CSV path or its lines): config, batch, status, ``need_gb`` (held + the CUDA reserve,
    GiB; for ``oom``: more than the GPU it ran on) and one ``"<n> GB"`` column per card: yes (it ran
    there with that memory), no (it needs more, or ran out of memory on a card that large), or ?
    (not measured: a failed or missing row, an ``oom`` on a smaller card, a CPU rehearsal's host memory)."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run `pna rehearse --device cuda --batch authors` on a GPU "
                                    "(scripts/gpu_check.sh) to write it")
        with path.open(newline="") as f:
            source = list(csv.DictReader(f))
    rows = []
    for line in source:
        held = _held_mb(line)
        tested = _number(line.get("gpu_total_mb"))
        if line.get("device", "cuda") != "cuda":
            need = ""  # a CPU rehearsal's peak is host memory
        elif line.get("status") == "ok" and held is not None:
            need = round((held + CUDA_RESERVE_MB) / 1024, 1)
        elif line.get("status") == "oom" and tested is not None:
            need = f"> {tested / 1024:.0f}"
        else:
            need = ""
        row = {"config": line["config"], "batch": line.get("batch", ""), "status": line.get("status", ""),
               "need_gb": need}
        rows.append(row | {f"{gb} GB": _verdict(line, gb * 1024) for gb in cards_gb})
    return rows


def fit_markdown(rows: list[dict]) -> str:
    """The table of :func:`fit_table` as Markdown."""
    return markdown_table(pd.DataFrame(rows), digits=1) if rows else "(no rows)"


def plan_markdown(table: pd.DataFrame) -> str:
    """The table of :func:`plan_table` as the README prints it (row names in backticks, ``%g`` numbers)."""
    batches = sorted(set(table["batch"]))
    row = f"row (batch {batches[0]})" if len(batches) == 1 else "row"
    columns = [row, "weights + AdamW, GB", "GB per image"] + [c for c in table.columns if c.endswith(" GB")]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for config, line in table.iterrows():
        cells = [f"`{config}`", f"{line['state_GB']:g}", f"{line['per_image_GB']:g}"] + list(line[columns[3:]])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
