"""Data loading whose randomness depends only on (seed, epoch, sample), never on process state.

Each training item is drawn with its augmentation RNGs seeded from (seed, epoch, index), and the
order of the samples of an epoch comes from the epoch number. So the batch of any iteration is
known in advance: a resumed run continues from the exact data position, workers and DDP ranks
change nothing, and 2 processes with batch B see the same samples as 1 process with batch 2B.

Example::

    >>> batches = epoch_batches(num_samples=10, batch_per_rank=2, epoch=0, seed=0)
    >>> len(batches), batches[0]
    (5, [(0, 4), (0, 1)])
"""
from __future__ import annotations

import functools
import random
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler


# Mixes (seed, epoch, index) into one integer seed: a prime larger than any dataset or epoch count,
# so distinct triples never share a seed in practice.
SEED_MIX = 1_000_003


class SeededItems(Dataset):
    """Wraps a dataset: item ``(epoch, index)`` is ``base[index]`` drawn under seeded RNGs.

    The global RNG states of the calling process are left as they were.
    """

    def __init__(self, base: Dataset, seed: int):
        self.base, self.seed = base, seed

    def __len__(self) -> int:
        return len(self.base)

    def item_seed(self, epoch: int, index: int) -> int:
        return (self.seed * SEED_MIX + epoch) * SEED_MIX + index

    def __getitem__(self, key: tuple[int, int]) -> dict:
        epoch, index = key
        seed = self.item_seed(epoch, index) % (2 ** 63)
        py_state, np_state = random.getstate(), np.random.get_state()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            random.seed(seed)
            np.random.seed(seed % (2 ** 32))
            try:
                return self.base[index]
            finally:
                random.setstate(py_state)
                np.random.set_state(np_state)


def epoch_batches(num_samples: int, batch_per_rank: int, epoch: int, seed: int,
                  world_size: int = 1, rank: int = 0) -> list[list[tuple[int, int]]]:
    """This rank's batches of one epoch as lists of ``(epoch, index)`` keys (last partial dropped).

    The order is torch's DistributedSampler shuffle for (seed, epoch); rank r takes every
    world_size-th sample, so the union of the ranks' j-th batches is the j-th batch of a single
    process with batch ``batch_per_rank * world_size``.
    """
    sampler = DistributedSampler(range(num_samples), num_replicas=world_size, rank=rank,
                                 shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    indices = list(sampler)
    count = len(indices) // batch_per_rank
    return [[(epoch, i) for i in indices[b * batch_per_rank:(b + 1) * batch_per_rank]] for b in range(count)]


def batches_per_epoch(num_samples: int, batch_per_rank: int, world_size: int = 1) -> int:
    return (num_samples // world_size) // batch_per_rank


def train_batches(dataset: Dataset, batch_per_rank: int, seed: int, start_iter: int = 0,
                  workers: int = 0, world_size: int = 1, rank: int = 0,
                  pin_memory: bool = False, collate_fn: Callable[[list[dict]], dict] | None = None) -> Iterator[dict]:
    """Endless training batches starting at iteration `start_iter` (the data position);
    ``collate_fn`` batches the items (None: torch's default stacking)."""
    per_epoch = batches_per_epoch(len(dataset), batch_per_rank, world_size)
    if per_epoch < 1:
        raise ValueError(f"the training set has {len(dataset)} samples, fewer than one batch of "
                         f"{batch_per_rank} per process x {world_size} processes")
    items = SeededItems(dataset, seed)
    epoch, offset = divmod(start_iter, per_epoch)
    while True:
        batches = epoch_batches(len(dataset), batch_per_rank, epoch, seed, world_size, rank)[offset:]
        # Its own generator: creating a loader draws a worker base seed, which must not come from
        # the global RNG (a resumed run creates one loader more than an uninterrupted run).
        generator = torch.Generator().manual_seed(seed + epoch)
        yield from DataLoader(items, batch_sampler=batches, num_workers=workers, pin_memory=pin_memory,
                              generator=generator, collate_fn=collate_fn)
        epoch, offset = epoch + 1, 0


def padding_collate(size_divisor: int, ignore_index: int) -> Callable[[list[dict]], dict]:
    """The training batches' collate: samples padded (image 0, label ``ignore_index``, bottom/right)
    to the batch's largest size rounded up to ``size_divisor`` (the model's,
    :func:`pna.models.segmentor.size_divisor`)."""
    from pna.data.collate import pad_collate

    return functools.partial(pad_collate, size_divisor=size_divisor, ignore_index=ignore_index)


def _stack_same_size(items: list[dict]) -> dict:
    """Collate evaluation items; images of different sizes stay a list (whole-image inference)."""
    same = len({tuple(it["image"].shape) for it in items}) == 1 and len({tuple(it["label"].shape) for it in items}) == 1
    return {
        "image": torch.stack([it["image"] for it in items]) if same else [it["image"] for it in items],
        "label": torch.stack([it["label"] for it in items]) if same else [it["label"] for it in items],
        "id": [it["id"] for it in items],
    }


def eval_loader(dataset: Dataset, batch_size: int = 1, workers: int = 0, world_size: int = 1,
                rank: int = 0) -> DataLoader:
    """This rank's shard (every world_size-th sample) of an evaluation set, in order."""
    shard = torch.utils.data.Subset(dataset, range(rank, len(dataset), world_size))
    return DataLoader(shard, batch_size=batch_size, shuffle=False, num_workers=workers,
                      collate_fn=_stack_same_size)
