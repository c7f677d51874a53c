"""DDP: 2 CPU processes (gloo) with batch 2 each train like 1 process with batch 4.

Why they can be compared at all: the loader gives rank r every 2nd sample of the single-process
batch (pna.engine.loader), SyncBatchNorm normalises over both ranks' samples like BatchNorm over the
whole batch, and DDP averages the two ranks' gradients, which equals the single-process gradient
when every rank's loss averages the same number of pixels (here: no ignored pixels, scale 1, no
padding). Dropout is switched off in both runs: its masks are drawn per process, so 1 and 2
processes cannot draw the same ones. What is left is the order of float32 sums.

The comparison is made where rounding is not amplified: plain SGD (no momentum, no weight decay)
replaces AdamW in both runs (AdamW divides by sqrt(v) and turns a rounding-level gradient difference
into a full step of +-lr for near-zero gradients), and the gradients of every step are compared
directly. Tolerance per parameter tensor, from float32 summation order: a float32 sum of N terms taken
in another order differs by at most about 2 * N * u * sum|terms| (u = 2^-24 = 6e-8). A gradient entry
sums N ~ 1e3-1e4 terms (batch x positions, and the channels each backward layer sums over), so with
sum|terms| of the order of the tensor's largest entry the bound is 1e-4 to 1e-3 of that entry:
REL_GRAD = 1e-3 (measured: at most 5e-5, median 1e-6). A gradient that is zero in exact arithmetic
(the NAM's q and k on the 1 x 1 stride-32 map, where the softmax over one key is 1 whatever q and k
are) comes out as rounding noise of its upstream terms, which are no larger than the model's largest
gradient entry G: we allow one rounding of G, u * G (measured: 0.003 u * G). A wrong data split,
a missing gradient average or per-rank BatchNorm statistics differ by 1e-2 or more of the largest
entry. After the SGD steps a parameter has moved by lr * (sum of its gradients), so the two runs'
parameters may differ by at most lr * (sum of the gradient bounds) plus one float32 rounding of the
parameter per step and run.
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
from pna.engine.distributed import cleanup

ITERS, LR = 3, 1e-3
REL_GRAD = 1e-3              # see the module docstring
UNIT_ROUNDOFF = 2.0 ** -24   # float32


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


class RecordingSGD(torch.optim.SGD):
    """Plain SGD (lr only) that keeps a copy of every step's gradients by parameter name."""

    def __init__(self, model: torch.nn.Module, lr: float):
        self.names = {p: n for n, p in model.named_parameters()}
        super().__init__([p for p in model.parameters() if p.requires_grad], lr=lr, momentum=0.0, weight_decay=0.0)
        self.grads: list[dict[str, torch.Tensor]] = []

    def step(self, closure=None):
        self.grads.append({self.names[p]: p.grad.detach().clone() for g in self.param_groups for p in g["params"]})
        return super().step(closure)


def _use_recording_sgd(recorded: list) -> None:
    """Every optimiser train() builds from now on is a RecordingSGD (its gradients land in ``recorded``)."""
    import pna.engine.train as engine_train

    def build(model, lr, *args, **kwargs):
        recorded.append(RecordingSGD(model, lr))
        return recorded[-1]

    engine_train.build_optimizer = build


def _worker(rank: int, world: int, port: int, cache: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank), HF_HUB_OFFLINE="1")
    torch.set_num_threads(1)
    _no_dropout()
    optimisers = []
    _use_recording_sgd(optimisers)
    import warnings
    cfg = load_config("voc/fcn_r50_os32_pna", "smoke", _overrides(Path(cache)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(cfg, out_dir=out, write_results=False, progress=False)
    cleanup()  # a barrier first: gloo aborts a process whose peer tears down early
    torch.save(optimisers[0].grads, Path(out) / f"grads.rank{rank}.pt")
    # DDP's reducer warns when a gradient's strides differ from its parameter's (see test_grad_layout)
    strides = [str(w.message).splitlines()[0] for w in caught if "Grad strides" in str(w.message)]
    (Path(out) / f"grad_stride_warnings.rank{rank}.txt").write_text("\n".join(strides))


def test_two_gloo_processes_match_one_process_with_the_same_effective_batch(tmp_path, monkeypatch):
    import pna.engine.train as engine_train

    for cls in (torch.nn.Dropout, torch.nn.Dropout2d):
        monkeypatch.setattr(cls, "forward", lambda self, x: x)
    monkeypatch.setattr(engine_train, "build_optimizer", engine_train.build_optimizer)  # restored afterwards
    optimisers = []
    _use_recording_sgd(optimisers)
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

    # every step's gradients, directly: both ranks hold the same averaged gradient, to the bit
    ones, ranks = optimisers[0].grads, [torch.load(tmp_path / "ddp" / f"grads.rank{r}.pt") for r in range(2)]
    assert len(ones) == len(ranks[0]) == len(ranks[1]) == ITERS and set(ones[0]) == set(ranks[0][0])
    assert all(torch.equal(ranks[0][s][n], ranks[1][s][n]) for s in range(ITERS) for n in ones[0])
    bounds = {n: 0.0 for n in ones[0]}  # sum over the steps of each tensor's gradient bound
    worst = (0.0, "")
    for step in range(ITERS):
        largest = max(g.abs().max().item() for g in ones[step].values())
        for name, g in ones[step].items():
            bound = REL_GRAD * g.abs().max().item() + UNIT_ROUNDOFF * largest
            diff = (ranks[0][step][name] - g).abs().max().item()
            worst = max(worst, (diff / bound, f"{name} (step {step + 1}: {diff:.2e} > {bound:.2e})"))
            bounds[name] += bound
    print(f"largest gradient difference: {worst[0]:.2e} of its bound, {worst[1]}")
    assert worst[0] <= 1, f"gradient difference over its bound: {worst[1]}"

    # the parameters after the SGD steps
    a, b = single_state(tmp_path / "single"), ddp_done["model"]
    assert set(a) == set(b)  # SyncBN was converted back into the same state-dict keys
    for name, bound in bounds.items():
        bound = LR * bound + 2 * ITERS * UNIT_ROUNDOFF * a[name].abs().max().item()
        assert (a[name] - b[name]).abs().max().item() <= bound, name
    # the BatchNorm running statistics: sums over the batch like the gradients, the same relative bound
    for name in set(a) - set(bounds):
        if a[name].is_floating_point():
            bound = REL_GRAD * a[name].abs().max().item() + UNIT_ROUNDOFF
            assert (a[name] - b[name]).abs().max().item() <= bound, name
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
    cleanup()  # a barrier first: gloo aborts a process whose peer tears down early


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
