"""What the rehearsal measures (:mod:`pna.tools.rehearse`): peak memory per phase, the size of a
failed CUDA allocation, steady-state seconds per iteration from the training log, the GPU.

Example:
    >>> import torch
    >>> meter = PeakMemory(torch.device("cpu")); meter.reset()
    >>> meter.read()[0] > 0 and meter.read()[1] is None
    True
"""
from __future__ import annotations

import gc
import re
import resource
from pathlib import Path

_OOM_ASKED = re.compile(r"Tried to allocate ([0-9.]+) (B|KiB|MiB|GiB|TiB)")  # torch's CUDA OOM message
_UNIT_MB = {"B": 2 ** -20, "KiB": 2 ** -10, "MiB": 1, "GiB": 2 ** 10, "TiB": 2 ** 20}


class PeakMemory:
    """Peak memory since the last :meth:`reset`: CUDA allocated and reserved MiB, or on CPU the
    resident high-water mark (VmHWM, reset through ``/proc/self/clear_refs``; where that cannot be
    reset, the process's peak RSS)."""

    def __init__(self, device):
        self.device = device

    def reset(self) -> None:
        import torch

        gc.collect()  # an earlier phase's model and optimiser must not count here
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(self.device)
            return
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass

    def read(self) -> tuple[float, float | None]:
        """(peak MiB, reserved MiB or None on CPU)."""
        import torch

        if self.device.type == "cuda":
            return (torch.cuda.max_memory_allocated(self.device) / 2 ** 20,
                    torch.cuda.max_memory_reserved(self.device) / 2 ** 20)
        try:
            return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1)) / 1024, None
        except (OSError, AttributeError):
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, None  # Linux: kB


def oom_asked_mb(error: BaseException) -> float | None:
    """The allocation a CUDA out-of-memory error asked for, in MiB; None when ``error`` is no OOM.

    Example:
        >>> oom_asked_mb(RuntimeError("CUDA out of memory. Tried to allocate 2.50 GiB. GPU 0 has ..."))
        2560.0
        >>> oom_asked_mb(ValueError("bad")) is None
        True
    """
    import torch

    text = str(error)
    if not (isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in text.lower()):
        return None
    found = _OOM_ASKED.search(text)
    return float(found.group(1)) * _UNIT_MB[found.group(2)] if found else float("nan")


def steady_seconds(log: list[dict], warmup: int) -> float:
    """Mean seconds per training iteration after the first ``warmup`` ones, from the cumulative
    ``time_s`` of the log's train entries (one per iteration; a resumed run continues the clock).

    Example:
        >>> log = [{"type": "train", "iter": i + 1, "time_s": t} for i, t in enumerate([5.0, 6.0, 7.5, 8.5])]
        >>> steady_seconds(log, 2), steady_seconds(log, 0)
        (1.25, 2.125)
    """
    times = {e["iter"]: e["time_s"] for e in log if e["type"] == "train"}
    last = max(times, default=0)
    if sorted(times) != list(range(1, last + 1)):
        raise ValueError(f"the training log must time every iteration (log_interval 1), got iterations {sorted(times)}")
    if not 0 <= warmup < last:
        raise ValueError(f"warmup must be in [0, {last}) for {last} logged iterations, got {warmup}")
    return (times[last] - (times[warmup] if warmup else 0.0)) / (last - warmup)


def gpu_info(device) -> dict:
    """Name and total memory (MiB) of a CUDA device; empty for the CPU."""
    import torch

    if device.type != "cuda":
        return {}
    return {"gpu": torch.cuda.get_device_name(device),
            "gpu_total_mb": round(torch.cuda.get_device_properties(device).total_memory / 2 ** 20)}
