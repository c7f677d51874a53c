"""Which paper rows fit which GPU, from the CUDA rehearsal's table (``results/rehearsal/cuda.csv``).

A row trained at its authors' per-GPU batch fits a card when what the rehearsal saw it hold, the
caching allocator's peak (``reserved_mb``; ``peak_mb`` where a table has no reserved column), plus
:data:`CUDA_CONTEXT_MB` for what is outside the allocator, is at most the card's memory. A row
that ran out of memory (``oom``) needed more than the rehearsal's GPU (``gpu_total_mb``): it fits
no card of that size or smaller, and is unknown ("?") on larger ones. A failed or missing row, or a row of a CPU rehearsal, is unknown everywhere.

Example:
    >>> rows = fit_table([{"config": "voc/a", "batch": "4", "status": "ok", "peak_mb": "9000",
    ...                    "reserved_mb": "23000", "gpu_total_mb": "81559"}])
    >>> rows[0]["need_gb"], rows[0]["24 GB"], rows[0]["40 GB"]
    (23.5, 'yes', 'yes')
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Iterable, Sequence

CARDS_GB = (24, 40, 80)  # the usual sizes: RTX 3090 / 4090 / A5000, A100 40 GB, A100 / H100 80 GB
# Outside torch's caching allocator: the CUDA context with its loaded kernels and the cuBLAS /
# cuDNN handles and workspaces, typically 0.3-0.8 GiB with lazy module loading; the upper end, rounded up.
CUDA_CONTEXT_MB = 1024


def _number(text) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _verdict(line: dict, card_mb: float) -> str:
    status = line.get("status") if line.get("device", "cuda") == "cuda" else "not a GPU run"
    if status == "ok":
        held = _number(line.get("reserved_mb")) or _number(line.get("peak_mb"))
        return "?" if held is None else "yes" if held + CUDA_CONTEXT_MB <= card_mb else "no"
    tested = _number(line.get("gpu_total_mb"))
    if status == "oom" and tested is not None and card_mb <= tested:
        return "no"
    return "?"


def fit_table(source: str | Path | Iterable[dict], cards_gb: Sequence[int] = CARDS_GB) -> list[dict]:
    """One dict per row of the rehearsal table ``source`` (a CSV path or its lines): config, batch,
    status, ``need_gb`` (held + context, GiB; for ``oom``: more than the GPU it ran on) and one
    ``"<n> GB"`` column per card: yes, no or ?."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: run `pna rehearse --device cuda --batch authors` on a GPU "
                                    "(scripts/gpu_check.sh) to write it")
        with path.open(newline="") as f:
            source = list(csv.DictReader(f))
    rows = []
    for line in source:
        held = _number(line.get("reserved_mb")) or _number(line.get("peak_mb"))
        tested = _number(line.get("gpu_total_mb"))
        if line.get("device", "cuda") != "cuda":
            need = ""  # a CPU rehearsal's peak is host memory
        elif line.get("status") == "ok" and held is not None:
            need = f"{(held + CUDA_CONTEXT_MB) / 1024:.1f}"
        elif line.get("status") == "oom" and tested is not None:
            need = f"> {tested / 1024:.0f}"
        else:
            need = ""
        row = {"config": line["config"], "batch": line.get("batch", ""), "status": line.get("status", ""),
               "need_gb": float(need) if need and need[0] != ">" else need}
        rows.append(row | {f"{gb} GB": _verdict(line, gb * 1024) for gb in cards_gb})
    return rows


def fit_markdown(rows: list[dict]) -> str:
    """The table of :func:`fit_table` as Markdown."""
    if not rows:
        return "(no rows)"
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(row[k]) for k in keys) + " |" for row in rows]
    return "\n".join(lines)
