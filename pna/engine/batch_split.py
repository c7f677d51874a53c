"""The effective batch as processes x micro-batch x accumulation steps, and one accumulated step.

``train.batch_size`` is the batch one optimiser step sees (the authors': 16 images, 4 GPUs x 4, or
2 x 8 for VOC DeepLabV3). With fewer GPUs, or less memory per GPU, than the authors had, each process
runs ``accumulation`` forward/backward passes of ``train.micro_batch`` images and the optimiser steps
once: ``batch_size = processes x micro_batch x accumulation``, exactly (anything else is an error).

What is the same and what is not:

* The images of an iteration are the same whatever the split (:mod:`pna.engine.loader` deals the
  global batch to the ranks; each rank cuts its share into micro-batches in order).
* The gradient: each micro-batch's loss is divided by ``accumulation`` and DDP averages over the
  processes, so the summed gradient is ``(1 / (P A)) sum_{p,a} grad mean_{(p,a)}``, which equals the
  gradient of the full batch's mean loss exactly when every micro-batch averages the same number of
  pixels: no ignored (255) pixels, or the same count in each micro-batch. (The authors' MMSeg loss
  divides by all pixels of the per-GPU batch, ignored ones included, so there it holds always.)
* BatchNorm statistics are computed per forward pass: over ``micro_batch`` images, or ``processes x
  micro_batch`` with SyncBN (``train.syncbn``, more than one process). The authors' SyncBN saw all
  16. One process holding all 16 images computes BN over 16 as SyncBN over 4 x 4 does.
* Hard-pixel mining (``model.loss.hard_pixel_fraction``) takes its top-k over what one loss call
  sees: the micro-batch, or chunks of ``model.loss.hard_pixel_chunk`` images of it when that is set
  (the authors: per GPU, 4 images); a ``train.micro_batch`` given must then be a multiple of the
  chunk (left automatic, a process's share smaller than a chunk is mined whole, and recorded so).

The split is recorded with every run (:func:`describe_split`), with its differences to the authors'.
No library splits a batch this way for us (DDP's ``no_sync`` is the part torch offers, used here).

Example::

    >>> split = plan_split(batch=16, processes=2, micro_batch=4)
    >>> split.per_process, split.accumulation, split.text()
    (8, 2, '2 process(es) x 4 images x 2 accumulation steps = 16')
    >>> plan_split(16, 3)
    Traceback (most recent call last):
    ...
    ValueError: train.batch_size 16 (the effective batch) cannot be split over 3 process(es) exactly: choose a batch or a process count that divides it
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class BatchSplit:
    """``batch = processes x micro_batch x accumulation`` (checked by :func:`plan_split`)."""

    batch: int
    processes: int
    micro_batch: int

    @property
    def per_process(self) -> int:
        return self.batch // self.processes

    @property
    def accumulation(self) -> int:
        return self.per_process // self.micro_batch

    def text(self) -> str:
        return (f"{self.processes} process(es) x {self.micro_batch} images x {self.accumulation} accumulation "
                f"steps = {self.batch}")


def plan_split(batch: int, processes: int, micro_batch: int | None = None, chunk: int | None = None) -> BatchSplit:
    """The split of ``batch`` images over ``processes``; ``micro_batch`` None: no accumulation.
    ``chunk``: the hard-pixel mining chunk the micro-batch must be a multiple of. One-line errors."""
    if processes < 1 or batch % processes:
        raise ValueError(f"train.batch_size {batch} (the effective batch) cannot be split over {processes} "
                         "process(es) exactly: choose a batch or a process count that divides it")
    per_process = batch // processes
    micro = per_process if micro_batch is None else micro_batch
    if micro < 1 or per_process % micro:
        raise ValueError(f"train.micro_batch {micro_batch}: {processes} process(es) x micro-batch x accumulation "
                         f"must equal train.batch_size {batch} exactly; choose a micro-batch that divides "
                         f"{per_process} (the images per process)")
    if chunk and micro % chunk and micro_batch is not None:  # automatic: a share below a chunk is recorded
        raise ValueError(f"train.micro_batch {micro}: this row mines hard pixels per chunk of "
                         f"{chunk} images (model.loss.hard_pixel_chunk), so the micro-batch must be a multiple of {chunk}")
    return BatchSplit(batch, processes, micro)


def mining_chunk(cfg) -> int | None:
    """The hard-pixel mining chunk of ``cfg`` (None: the row does not mine, or mines per loss call)."""
    loss = cfg.model.loss
    return loss.get("hard_pixel_chunk") if loss.get("hard_pixel_fraction") is not None else None


def split_for(cfg, processes: int) -> BatchSplit:
    """The split ``cfg`` trains with on ``processes`` processes."""
    return plan_split(cfg.train.batch_size, processes, cfg.train.micro_batch, mining_chunk(cfg))


def micro_batches(batch: dict, size: int) -> list[dict]:
    """``batch`` (tensors and lists along the first axis) cut into consecutive pieces of ``size``.
    A padded batch (``"extent"``, :func:`pna.data.collate.pad_collate`) has each piece's image and
    label cropped to the piece's own padded size, so a micro-batch is padded as the authors' per-GPU
    batch of the same images was, not to the largest image of the whole share."""
    count = len(batch["image"]) // size
    pieces = [{key: value[i * size:(i + 1) * size] for key, value in batch.items()} for i in range(count)]
    if "extent" in batch and count > 1:
        for piece in pieces:
            h, w = piece["extent"].max(dim=0).values.tolist()
            piece["image"], piece["label"] = piece["image"][..., :h, :w], piece["label"][..., :h, :w]
    return pieces


def accumulate_gradients(net: nn.Module, criterion: nn.Module, batch: dict, micro_batch: int,
                         device: torch.device, amp: bool, scaler) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Forward and backward every micro-batch of this process's share of the iteration's batch.

    Each micro-batch's loss is divided by the number of micro-batches before its backward (module
    docstring); under DDP only the last backward all-reduces (``no_sync`` on the others: the gradients
    accumulate locally and are averaged once). Returns the iteration's loss and per-output parts,
    detached: means over the micro-batches (the full batch's mean under the condition above).
    """
    pieces = micro_batches(batch, micro_batch)
    steps = len(pieces)
    total = torch.zeros((), device=device)
    parts_sum: dict[str, torch.Tensor] = {}
    for i, piece in enumerate(pieces):
        last = i == steps - 1
        sync = contextlib.nullcontext() if last or not hasattr(net, "no_sync") else net.no_sync()
        with sync:
            images = piece["image"].to(device, non_blocking=True)
            labels = piece["label"].to(device, non_blocking=True)
            with torch.autocast(device.type, enabled=amp):
                outputs = net(images)
                loss, parts = criterion(outputs, labels)
            scaler.scale(loss / steps).backward()
        total += loss.detach().float() / steps
        for name, part in parts.items():
            parts_sum[name] = parts_sum.get(name, 0.0) + part.detach().float() / steps
    return total, parts_sum


def describe_split(cfg, split: BatchSplit) -> dict:
    """The split as the run record states it, with what BatchNorm and hard-pixel mining see, and
    (paper profile) how that differs from the authors' setting of the row."""
    sync = cfg.train.syncbn and split.processes > 1
    bn_images = split.micro_batch * (split.processes if sync else 1)
    mines = cfg.model.loss.get("hard_pixel_fraction") is not None
    chunk = mining_chunk(cfg)
    mining_images = (min(chunk, split.micro_batch) if chunk else split.micro_batch) if mines else None
    record = {"processes": split.processes, "per_process": split.per_process, "micro_batch": split.micro_batch,
              "accumulation": split.accumulation, "bn_images": bn_images, "mining_images": mining_images,
              "text": split.text(), "differences": []}
    authors = _authors(cfg)
    if authors is None:
        return record
    gpus, per_gpu = authors.gpus, authors.batch_per_gpu
    theirs = {"gpus": gpus, "batch_per_gpu": per_gpu, "bn_images": gpus * per_gpu,  # SyncBN in every row
              "mining_images": per_gpu if authors.hard_mining else None}
    record["authors"] = theirs
    if bn_images != theirs["bn_images"]:
        record["differences"].append(
            f"BatchNorm statistics over {bn_images} images per forward pass (authors: {theirs['bn_images']}, "
            f"SyncBN over {gpus} GPUs x {per_gpu})")
    if mines and mining_images != theirs["mining_images"]:
        record["differences"].append(
            f"hard-pixel mining over {mining_images} images per top-k (authors: per GPU, {per_gpu})")
    return record


def _authors(cfg):
    """The authors' setting of a paper-profile row, else None."""
    if cfg.profile != "paper":
        return None
    from pna.configs import ROWS
    from pna.configs.paper import authors_setting

    row = ROWS.get(cfg.name)
    return authors_setting(row) if row is not None else None
