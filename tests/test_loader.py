"""The training data order and per-sample seeding (pna.engine.loader), against what the module promises:
the order is torch's DistributedSampler shuffle, a permutation drawn with seed + epoch; rank r of w takes
every w-th sample of it; each item's randomness depends on (seed, epoch, index) only; a run started at
iteration i sees the batches an uninterrupted run sees from i on."""
import random
from itertools import islice

import numpy as np
import pytest
import torch

from pna.engine.loader import SeededItems, epoch_batches, train_batches


def permutation(n: int, seed: int, epoch: int) -> list[int]:
    """DistributedSampler's shuffle: randperm(n) from a generator seeded with seed + epoch."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch)).tolist()


@pytest.mark.parametrize("epoch", [0, 3])
def test_one_process_batches_are_the_seeded_permutation_in_order(epoch):
    order = permutation(11, seed=5, epoch=epoch)
    batches = epoch_batches(11, 3, epoch=epoch, seed=5)
    assert batches == [[(epoch, i) for i in order[b * 3:(b + 1) * 3]] for b in range(3)]  # the last 2 dropped


def test_ranks_split_the_single_process_batches():
    order = permutation(12, seed=7, epoch=2)
    single = epoch_batches(12, 4, epoch=2, seed=7)
    ranks = [epoch_batches(12, 2, epoch=2, seed=7, world_size=2, rank=r) for r in range(2)]
    for r in range(2):
        assert [i for batch in ranks[r] for _, i in batch] == order[r::2]
    for j, batch in enumerate(single):  # the union of the ranks' j-th batches is the j-th single batch
        assert sorted(batch) == sorted(ranks[0][j] + ranks[1][j])
    assert epoch_batches(12, 4, epoch=3, seed=7) != single  # another epoch, another order


class Draws(torch.utils.data.Dataset):
    """Each item: one draw from torch, numpy and python's global generators."""

    def __len__(self):
        return 10

    def __getitem__(self, index):
        return {"draws": torch.tensor([torch.rand(()).item(), np.random.rand(), random.random()]), "index": index}


def test_an_items_randomness_depends_on_seed_epoch_and_index_only():
    items = SeededItems(Draws(), seed=3)
    torch.manual_seed(0)
    state = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    first = items[(1, 4)]["draws"]
    assert torch.equal(items[(1, 4)]["draws"], first)  # the same key draws the same
    assert torch.equal(torch.get_rng_state(), state[0]) and (np.random.get_state()[1] == state[1]).all()
    assert random.getstate() == state[2]  # the global generators are left as they were
    others = [items[(2, 4)]["draws"], items[(1, 5)]["draws"], SeededItems(Draws(), seed=4)[(1, 4)]["draws"]]
    for other in others:  # another epoch, another index, another seed: other draws, in every generator
        assert (other != first).all()


def test_a_run_started_at_an_iteration_sees_the_uninterrupted_batches():
    dataset = Draws()  # 10 samples, batch 3: 3 batches per epoch
    straight = [b["index"].tolist() for b in islice(train_batches(dataset, 3, seed=1), 8)]
    for start in (2, 3, 7):
        resumed = [b["index"].tolist() for b in islice(train_batches(dataset, 3, seed=1, start_iter=start), 8 - start)]
        assert resumed == straight[start:], start
    epochs = [permutation(10, 1, e) for e in range(3)]
    assert straight == [epochs[e][b * 3:(b + 1) * 3] for e in range(3) for b in range(3)][:8]
