"""The effective batch split into processes x micro-batch x accumulation steps (pna.engine.batch_split).

Gradients of the first step are compared directly (recorded just before the optimiser steps):
1 process x 4 images, 1 process x 2 images x 2 accumulation steps, 2 gloo processes x 2 images, and
2 gloo processes x 1 image x 2 steps, on the same 4 images (same seed; the loader deals the global
batch to the ranks). With BatchNorm frozen (running statistics, as in eval) every split computes
the same gradient up to float32 rounding:

Tolerance, derived: the splits differ only in how sums are grouped (per-micro-batch means divided by
the step count, DDP's average over 2 ranks, against one mean over 4 images). float32 rounds each
addition to within u = 2^-24 = 6e-8 relative; a gradient entry of a conv layer sums at most
n = 4 images x 32 x 32 pixels = 4096 products, whose rounding error grows like sqrt(n) u = 3.8e-6
typically (n u = 2.4e-4 at worst), and the backward pass chains about L = 20 such layers, the
differences adding up to about L sqrt(n) u = 8e-5 of a tensor's norm. We allow 1e-3 (a tensor's
relative L2 difference, ||a - b|| / ||b||), about ten times that estimate and far below what a broken
split gives: a loss not divided by its step count doubles the gradient (relative difference 1), a
micro-batch left out or counted twice moves it by about 0.5.

With BatchNorm live, accumulation normalises each forward over its own 2 images instead of 4: the
gradients then differ by far more than the tolerance (the documented difference), while 2 gloo
processes with SyncBN (statistics over both ranks' images) still match 1 process x 4.
"""
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from pna.configs import config_hash, load_config
from pna.engine.batch_split import describe_split, micro_batches, plan_split, split_for
from pna.engine.train import Trainer, train
from pna.engine.distributed import cleanup

TOLERANCE = 1e-3  # relative L2 difference per gradient tensor (module docstring)
NOISE = 1e-4      # gradients below this fraction of the whole gradient's norm are compared at that floor
ROW = "voc/fcn_r50_os32_pna"


def _overrides(cache: Path, micro, syncbn: bool) -> list[str]:
    return [
        f"data.root={cache}", "data.options={'num_train': 16, 'num_val': 4, 'size': 32, 'seed': 0}",
        "data.crop=(32, 32)", "data.scale_range=(1.0, 1.0)", "data.photometric=False",
        "train.iters=3", "train.batch_size=4", f"train.micro_batch={micro}", "train.checkpoint_interval=0",
        "train.log_interval=1", "train.eval_interval=0", f"train.syncbn={syncbn}", "train.device=cpu",
        "model.overrides.embed_dims=(32, 32, 32, 32)", "model.overrides.head_channels=16",
        "model.overrides.aux_channels=16", "model.overrides.window_size=3",
    ]


def _frozen_batchnorm(self, x):  # BatchNorm with its running statistics, in training too
    return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)


def _patch(frozen_bn: bool) -> dict:
    """No dropout (masks are drawn per process); BN frozen if asked; record the first step's gradients."""
    for cls in (torch.nn.Dropout, torch.nn.Dropout2d):
        cls.forward = lambda self, x: x
    if frozen_bn:
        torch.nn.BatchNorm2d.forward = _frozen_batchnorm
    grads: dict = {}
    original = Trainer.apply_gradients

    def recording(self, bad_outputs):
        if not grads:
            grads.update({n: p.grad.detach().clone() for n, p in self.model.named_parameters() if p.grad is not None})
        return original(self, bad_outputs)

    Trainer.apply_gradients = recording
    return grads


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, cache: str, out: str, micros: tuple, syncbn: bool, frozen_bn: bool) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank),
                      LOCAL_RANK=str(rank), HF_HUB_OFFLINE="1")
    torch.set_num_threads(1)
    import warnings
    warnings.simplefilter("ignore")
    for micro in micros:
        grads = _patch(frozen_bn)
        cfg = load_config(ROW, "smoke", _overrides(Path(cache), micro, syncbn))
        train(cfg, out_dir=Path(out) / f"micro{micro}", write_results=False, progress=False, stop_after=1)
        if rank == 0:
            torch.save(grads, Path(out) / f"grads_micro{micro}.pt")
    cleanup()  # a barrier first: gloo aborts a process whose peer tears down early


def _spawn(tmp: Path, cache: Path, micros: tuple, syncbn: bool, frozen_bn: bool) -> list[dict]:
    mp.spawn(_worker, args=(_free_port(), str(cache), str(tmp), micros, syncbn, frozen_bn), nprocs=2, join=True)
    return [torch.load(tmp / f"grads_micro{m}.pt") for m in micros]


def _single(monkeypatch, cache: Path, out: Path, micro, syncbn: bool = False) -> dict:
    """The first step's gradients of one process (this one); every patch is undone after the test."""
    monkeypatch.setattr(Trainer, "apply_gradients", Trainer.apply_gradients)
    for cls in (torch.nn.Dropout, torch.nn.Dropout2d):
        monkeypatch.setattr(cls, "forward", cls.forward)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        grads = _patch(frozen_bn=False)  # BatchNorm as the test set it
        train(load_config(ROW, "smoke", _overrides(cache, micro, syncbn)), out_dir=out, write_results=False,
              progress=False, stop_after=1)
    finally:
        torch.set_num_threads(threads)
    return grads


def relative_difference(a: dict, b: dict) -> tuple[float, str]:
    """The largest ||a_k - b_k|| / max(||b_k||, NOISE ||b||) over the tensors k (and its name), and
    ``"all"``: the difference of the whole gradients. Tensors whose gradient is below NOISE of the
    whole gradient's norm are compared at that floor: their exact gradient is (near) zero and what is
    computed is rounding noise (the stride-32 NAM of a 1 x 1 map: ~1e-10)."""
    assert a.keys() == b.keys() and a
    whole = torch.cat([v.flatten() for v in b.values()])
    total = (torch.cat([a[k].flatten() for k in b]) - whole).norm().item() / whole.norm().item()
    floor = NOISE * whole.norm().item()
    return max([(total, "all")] + [((a[k] - b[k]).norm().item() / max(b[k].norm().item(), floor), k) for k in b])


@pytest.mark.slow
def test_accumulation_and_gloo_processes_give_the_gradient_of_the_whole_batch(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.nn.BatchNorm2d, "forward", _frozen_batchnorm)
    cache = tmp_path / "synthetic"
    whole = _single(monkeypatch, cache, tmp_path / "whole", None)            # 1 x 4
    accumulated = _single(monkeypatch, cache, tmp_path / "accumulated", 2)   # 1 x 2 x 2 steps
    two, two_accumulated = _spawn(tmp_path / "ddp", cache, (None, 1), syncbn=False, frozen_bn=True)  # 2 x 2, 2 x 1 x 2
    figures = {name: relative_difference(grads, whole) for name, grads in
               (("1x2x2", accumulated), ("2x2", two), ("2x1x2", two_accumulated))}
    print({name: f"{diff:.2e} ({key})" for name, (diff, key) in figures.items()})
    for name, (diff, key) in figures.items():
        assert diff <= TOLERANCE, f"{name}: gradient of {key} differs by {diff:.2e} (relative) from 1 process x 4"


@pytest.mark.slow
def test_with_live_batchnorm_only_the_statistics_differ(tmp_path, monkeypatch):
    cache = tmp_path / "synthetic"
    whole = _single(monkeypatch, cache, tmp_path / "whole", None, syncbn=True)
    accumulated = _single(monkeypatch, cache, tmp_path / "accumulated", 2, syncbn=True)
    (synced,) = _spawn(tmp_path / "ddp", cache, (None,), syncbn=True, frozen_bn=False)
    apart, _ = relative_difference(accumulated, whole)
    together, key = relative_difference(synced, whole)
    print(f"BN over 2 of 4 images: {apart:.2e}; SyncBN over 2 x 2: {together:.2e}")
    assert apart > 10 * TOLERANCE  # BN over each micro-batch of 2: other statistics, another gradient
    assert together <= TOLERANCE, f"{key}: {together:.2e}"


def test_plan_split_by_hand():
    split = plan_split(16, 4)
    assert (split.per_process, split.micro_batch, split.accumulation) == (4, 4, 1)  # the authors' 4 x 4
    split = plan_split(16, 1, micro_batch=4)
    assert (split.per_process, split.accumulation) == (16, 4)
    split = plan_split(16, 2, micro_batch=8, chunk=4)
    assert split.accumulation == 1
    assert plan_split(2, 1, chunk=4).micro_batch == 2  # automatic: a share below the chunk is mined whole
    with pytest.raises(ValueError, match=r"^train.micro_batch 3: 2 process\(es\).*divides 8 \(the images per process\)$"):
        plan_split(16, 2, micro_batch=3)
    with pytest.raises(ValueError, match="multiple of 4"):
        plan_split(16, 2, micro_batch=2, chunk=4)
    with pytest.raises(ValueError, match="cannot be split over 3"):
        plan_split(16, 3)


def test_micro_batches_keep_the_order_of_the_batch():
    batch = {"image": torch.arange(6).view(6, 1), "label": torch.arange(6), "id": list("abcdef")}
    pieces = micro_batches(batch, 2)
    assert [p["id"] for p in pieces] == [["a", "b"], ["c", "d"], ["e", "f"]]
    assert [p["label"].tolist() for p in pieces] == [[0, 1], [2, 3], [4, 5]]


def test_the_record_states_the_split_and_its_difference_to_the_authors():
    cfg = load_config("cityscapes/deeplabv3_r52_os16_pna", "paper", ["train.micro_batch=4"])
    assert cfg.model.loss.get("hard_pixel_fraction") == 0.2
    record = describe_split(cfg, split_for(cfg, 1))   # one GPU: 4 images x 4 steps
    assert record["text"] == "1 process(es) x 4 images x 4 accumulation steps = 16"
    assert record["authors"] == {"gpus": 4, "batch_per_gpu": 4, "bn_images": 16, "mining_images": 4}
    assert record["differences"] == ["BatchNorm statistics over 4 images per forward pass (authors: 16, SyncBN "
                                     "over 4 GPUs x 4)"]  # mining per 4 images, as theirs
    # one process holding all 16: BatchNorm over 16 as SyncBN over 4 x 4, and the loss mines per chunk of
    # 4 images (hard_pixel_chunk, the authors' per-GPU batch): no difference to state
    record = describe_split(cfg, split_for(load_config("cityscapes/deeplabv3_r52_os16_pna", "paper"), 1))
    assert record["bn_images"] == 16 and record["mining_images"] == 4 and record["differences"] == []
    assert describe_split(cfg, split_for(load_config("cityscapes/deeplabv3_r52_os16_pna", "paper"), 4))[
        "differences"] == []   # the authors' 4 x 4 with SyncBN


def test_micro_batch_does_not_change_the_config_hash():
    a = load_config(ROW, "paper")
    b = load_config(ROW, "paper", ["train.micro_batch=2"])
    assert config_hash(a) == config_hash(b)
    assert config_hash(a) != config_hash(load_config(ROW, "paper", ["train.batch_size=8"]))


def test_a_micro_batch_is_padded_as_its_own_images_alone_would_be():
    """Detectron2 pads each per-GPU batch to its own largest image (rounded up to the divisor): a
    micro-batch cut from a share padded as a whole must equal pad_collate of its images alone."""
    from pna.data.collate import pad_collate

    sizes = [(30, 20), (25, 30), (60, 40), (50, 64)]          # rounded up to 32: (32, 32), then (64, 64)
    items = [{"image": torch.rand(3, h, w), "label": torch.randint(0, 5, (h, w)), "id": str(i)}
             for i, (h, w) in enumerate(sizes)]
    pieces = micro_batches(pad_collate(items, size_divisor=32), 2)
    for piece, alone in zip(pieces, (pad_collate(items[:2], 32), pad_collate(items[2:], 32))):
        assert piece["image"].shape == alone["image"].shape and torch.equal(piece["image"], alone["image"])
        assert torch.equal(piece["label"], alone["label"]) and piece["id"] == alone["id"]
    assert [tuple(p["image"].shape[-2:]) for p in pieces] == [(32, 32), (64, 64)]
