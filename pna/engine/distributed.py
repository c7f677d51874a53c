"""torch.distributed helpers: set up from torchrun's environment, rank queries, reductions.

Single-process runs need none of this: every helper answers for a world of one.

Example::

    >>> world_size(), rank(), is_main()
    (1, 0, True)
"""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist


# How long a rank waits in a collective before failing: long enough for rank 0 to run a whole-split
# evaluation or write a large checkpoint while the others wait at the barrier (torch's own default
# is also 30 minutes for NCCL).
COLLECTIVE_TIMEOUT_MIN = 30


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def init_from_env(device: str = "auto") -> torch.device:
    """Join the process group that torchrun describes (WORLD_SIZE > 1) and pick this rank's device.

    NCCL on CUDA, gloo on CPU. Returns the device this process should use.
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asked for, but CUDA is not available")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo",
                                timeout=datetime.timedelta(minutes=COLLECTIVE_TIMEOUT_MIN))
    if use_cuda:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")


def barrier() -> None:
    if is_initialized():
        dist.barrier()


def mean_scalar(value: float, device: torch.device) -> float:
    """Average a Python float over all processes (for logging)."""
    if not is_initialized():
        return value
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor) / world_size()


def any_flags(flags: list[bool], device: torch.device) -> list[bool]:
    """Each flag OR-ed over all processes (one all-reduce), so that every rank takes the same
    decision (stop now, a bad loss) even when only one of them saw the cause."""
    if not is_initialized():
        return list(flags)
    tensor = torch.tensor([float(f) for f in flags], device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return [bool(v) for v in tensor.tolist()]


def gather_objects(obj) -> list:
    """``[obj of rank 0, obj of rank 1, ...]`` on every rank (``[obj]`` in a single process)."""
    if not is_initialized():
        return [obj]
    gathered = [None] * world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(obj):
    """Rank 0's `obj` on every rank."""
    if not is_initialized():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def cleanup(orderly: bool = True) -> None:
    """Leave the process group. A rank that finished its work (``orderly``) first waits at a barrier
    for the others: a gloo process whose peer tears its connections down while its own threads still
    use them aborts at exit ("terminate called without an active exception", SIGABRT; seen in 5 of 8
    runs of the two-process SyncBN test without the barrier, 0 of 8 with it). A rank leaving after an
    error skips the barrier: its peers may never reach it."""
    if is_initialized():
        if orderly:
            dist.barrier()
        dist.destroy_process_group()


class GlobalBatchNorm2d(torch.nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover the batch of every process (CPU and gloo too).

    torch's SyncBatchNorm refuses CPU modules under DDP; this one all-reduces the per-channel sum,
    sum of squares and count with autograd (torch.distributed.nn), so gradients flow through the
    shared statistics as in SyncBatchNorm. Same parameters and buffers as BatchNorm2d.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_initialized() and world_size() > 1):
            return super().forward(x)
        import warnings

        from torch.distributed.nn.functional import all_reduce  # differentiable, in torch 2.11 too

        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            stats = all_reduce(torch.cat([x.sum((0, 2, 3)), (x * x).sum((0, 2, 3)), count]))
        channels = x.shape[1]
        total = stats[-1]
        mean = stats[:channels] / total
        var = (stats[channels:2 * channels] / total - mean * mean).clamp(min=0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(var.detach() * total / (total - 1).clamp(min=1), momentum)
        y = (x - mean[None, :, None, None]) * torch.rsqrt(var + self.eps)[None, :, None, None]
        return y * self.weight[None, :, None, None] + self.bias[None, :, None, None] if self.affine else y


def convert_sync_batchnorm(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """torch's SyncBatchNorm on CUDA; :class:`GlobalBatchNorm2d` in place of BatchNorm2d on CPU."""
    if device.type == "cuda":
        return torch.nn.SyncBatchNorm.convert_sync_batchnorm(module)
    for layer in module.modules():
        if type(layer) is torch.nn.BatchNorm2d:
            layer.__class__ = GlobalBatchNorm2d
    return module
