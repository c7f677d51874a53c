"""DDP: 2 CPU processes (gloo) with batch 2 each train like 1 process with batch 4.

Why they can be compared at all: the loader gives rank r every 2nd sample of the single-process
batch (pna.engine.loader), SyncBatchNorm normalises over both ranks' samples like BatchNorm over the
whole batch, and DDP averages the two ranks' gradients, which equals the single-process gradient
when every rank's loss averages the same number of pixels (here: no ignored pixels, scale 1, no
padding). Dropout is switched off in both runs: its masks are drawn per process, so 1 and 2
processes cannot draw the same ones. What is left is floating-point summation order (convolution and all-reduce), ~1e-7
relative per step.

Tolerance: AdamW's update is lr * m / (sqrt(v) + eps), about lr in size whatever the gradient, so
a rounding-level gradient difference can at worst flip the update of a near-zero-gradient weight,
moving it by up to ~2 lr per step. After 3 steps at lr 1e-3 a parameter can thus differ by at most
~6e-3, while a wrong data split or missing gradient averaging moves most weights by ~lr every
step. We therefore require (a) every parameter within 6e-3, (b) the bulk (99%) of all parameter
entries within 1e-5, and (c) the per-stage mIoU within 2 points.
"""
import json
import os
import socket
from pathlib import Path

import torch
import torch.multiprocessing as mp

from pna.engine.checkpoint import load_checkpoint
from pna.configs import load_config
from pna.engine.train import train

ITERS, LR = 3, 1e-3


def _overrides(cache: Path) -> list[str]:
    return [
        f"data.root={cache}", "data.options={'num_train': 16, 'num_val': 4, 'size': 32, 'seed': 0}",
        "data.crop=(32, 32)", "data.scale_range=(1.0, 1.0)", "data.photometric=False",
        f"train.iters={ITERS}", "train.batch_size=4", "train.checkpoint_interval=0", "train.log_interval=1",
        "train.eval_interval=0", "train.syncbn=True", "train.device=cpu", "eval.batch_size=2",
        f"optim.lr={LR}", "optim.warmup_iters=0",
        "model.overrides.embed_dims=(32, 32, 32, 32)", "model.overrides.head_channels=16",
        "model.overrides.aux_channels=16", "model.overrides.window_size=3",
    ]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _no_dropout() -> None:
    for cls in (torch.nn.Dropout, torch.nn.Dropout2d):
        cls.forward = lambda self, x: x


def _worker(rank: int, world: int, port: int, cache: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank), HF_HUB_OFFLINE="1")
    torch.set_num_threads(1)
    _no_dropout()
    import warnings
    cfg = load_config("voc/fcn_r50_os32_pna", "smoke", _overrides(Path(cache)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(cfg, out_dir=out, write_results=False, progress=False)
    torch.distributed.destroy_process_group()
    # DDP's reducer warns when a gradient's strides differ from its parameter's (see test_grad_layout)
    strides = [str(w.message).splitlines()[0] for w in caught if "Grad strides" in str(w.message)]
    (Path(out) / f"grad_stride_warnings.rank{rank}.txt").write_text("\n".join(strides))


def test_two_gloo_processes_match_one_process_with_the_same_effective_batch(tmp_path, monkeypatch):
    for cls in (torch.nn.Dropout, torch.nn.Dropout2d):
        monkeypatch.setattr(cls, "forward", lambda self, x: x)
    cache = tmp_path / "synthetic"
    cfg = load_config("voc/fcn_r50_os32_pna", "smoke", _overrides(cache))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single = train(cfg, out_dir=tmp_path / "single", write_results=False, progress=False)
    finally:
        torch.set_num_threads(threads)
    mp.spawn(_worker, args=(2, _free_port(), str(cache), str(tmp_path / "ddp")), nprocs=2, join=True)

    for rank in range(2):
        assert (tmp_path / "ddp" / f"grad_stride_warnings.rank{rank}.txt").read_text() == "", f"rank {rank}"
    ddp_done = load_checkpoint(tmp_path / "ddp" / "final.pt")
    record = json.loads((tmp_path / "ddp" / "done.json").read_text())
    assert record["world_size"] == 2 and record["effective_batch"] == 4 and record["batch_per_process"] == 2
    a, b = single_state(tmp_path / "single"), ddp_done["model"]
    assert set(a) == set(b)  # SyncBN was converted back into the same state-dict keys
    diffs = torch.cat([(a[k].double() - b[k].double()).abs().flatten() for k in a if a[k].is_floating_point()])
    worst = sorted(((float((a[k].double() - b[k].double()).abs().max()), k) for k in a if a[k].is_floating_point()),
                   reverse=True)[:5]
    assert diffs.max() <= 2 * ITERS * LR, f"max parameter difference {diffs.max():.2e}: {worst}"
    assert torch.quantile(diffs.float(), 0.99) <= 1e-5, f"99th percentile difference {torch.quantile(diffs.float(), 0.99):.2e}"
    for stage, metrics in single.metrics["stages"].items():
        assert abs(metrics["mIoU"] - record["metrics"]["stages"][stage]["mIoU"]) <= 0.02


def single_state(run: Path) -> dict:
    return load_checkpoint(run / "final.pt")["model"]


def _resume_worker(rank: int, world: int, port: int, cache: str, out: str, stops: tuple) -> None:
    """Train in ``len(stops)`` calls, each stopping after that many iterations (None: to the end)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank), HF_HUB_OFFLINE="1")
    torch.set_num_threads(1)
    import warnings
    warnings.simplefilter("ignore")
    # Dropout stays ON: each rank draws its own masks, so an exact resume needs every rank's generators.
    cfg = load_config("voc/fcn_r50_os32_pna", "smoke", _overrides(Path(cache)) + ["train.iters=4"])
    for stop in stops:
        train(cfg, out_dir=out, write_results=False, progress=False, stop_after=stop)
    torch.distributed.destroy_process_group()


def test_a_two_process_run_resumes_bit_for_bit_on_every_rank(tmp_path):
    """2 gloo processes with dropout: stopped after 2 iterations and resumed, the run ends with the same
    weights, to the bit, as the run that was never stopped (rank 1's dropout generator included: when
    only rank 0's generators were saved, rank 1 drew other masks after the resume and the weights
    differed)."""
    cache = tmp_path / "synthetic"
    for name, stops in (("straight", (None,)), ("resumed", (2, None))):
        mp.spawn(_resume_worker, args=(2, _free_port(), str(cache), str(tmp_path / name), stops), nprocs=2, join=True)
    straight, resumed = single_state(tmp_path / "straight"), single_state(tmp_path / "resumed")
    different = [k for k in straight if not torch.equal(straight[k], resumed[k])]
    assert not different, f"{len(different)} tensors differ after the resume, e.g. {different[:3]}"
