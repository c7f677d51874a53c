"""The GPU path: what only a GPU reaches (issue 23). Marked ``cuda``: ``pytest -m cuda`` runs them
(``scripts/gpu_check.sh`` step 1); without a GPU they skip and ``-ra`` shows why.

- the compiled flex path (``auto`` on CUDA) against the brute-force definition, forward and the
  backward of q, k, v and the bias, in fp32, bf16 and fp16 (the AMP dtype);
- one compiled graph for two evaluation sizes (``dynamic=True``): graphs counted with
  ``torch._dynamo.utils.counters["stats"]["unique_graphs"]`` (torch 2.0 to 2.14);
- the training loop's fp16 steps with the grad scaler: an injected inf gradient skips the step
  and halves the scale; clipping acts on the unscaled gradients;
- a resumed run draws the dropout masks of an uninterrupted one (CUDA generator in the checkpoint);
- SyncBatchNorm over two NCCL processes equals BatchNorm over their joint batch (two GPUs).

The grad-scaler, dropout-mask and SyncBN checks also run on CPU (the CPU's scaler with bf16
autocast, the CPU generator, gloo with :class:`pna.engine.distributed.GlobalBatchNorm2d`), so the
logic of each check is known to work where no GPU is.

Tolerances: relative L2 error against float64, as in tests/test_amp.py: bf16 keeps 8 significant
bits, fp16 11; fp32 is allowed 1e-3 (TF32 where enabled), far below what a wrong window or bias
offset gives (order 0.1 to 1).
"""
import os
import socket
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from test_na2d import brute_force, make_inputs

ON_CUDA = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
DEVICES = [pytest.param("cpu"), pytest.param("cuda", marks=ON_CUDA)]
FLEX_TOL = {torch.float32: (1e-3, 1e-3), torch.bfloat16: (2e-2, 5e-2), torch.float16: (5e-3, 1e-2)}  # out, grads
# (L, H, W) at one window size (each L is its own compiled kernel): several 8 x 16 tiles with padded
# border tiles, a map narrower than a tile, and one smaller than the window along both axes
FLEX_SHAPES = [(9, 12, 34), (9, 20, 9), (9, 33, 40), (9, 4, 6)]
_EXPECTED: dict = {}


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double().cpu() - want.double().cpu()).norm() / want.double().cpu().norm()).item()


def _expected(shape):
    """Inputs, brute-force output and gradients in float64 (computed once per shape)."""
    if shape not in _EXPECTED:
        torch.manual_seed(sum(shape))
        kernel_size, height, width = shape
        inputs = make_inputs(kernel_size, height, width, batch=2, heads=2, dim=32, dim_v=32)
        with torch.no_grad():
            inputs[0].mul_(32 ** -0.5)  # q as the model scales it
        out = brute_force(*inputs, kernel_size)[1]
        seed = torch.randn_like(out)
        _EXPECTED[shape] = inputs, out.detach(), seed, torch.autograd.grad(out, inputs, seed)
    return _EXPECTED[shape]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=["fp32", "bf16", "fp16"])
def test_compiled_flex_forward_and_backward_match_the_definition(dtype):
    from pna.ops import na2d
    from pna.ops.na2d import IMPLS, _resolve

    out_tol, grad_tol = FLEX_TOL[dtype]
    for shape in FLEX_SHAPES:
        inputs, want, seed, want_grads = _expected(shape)
        got_inputs = [t.detach().to("cuda", dtype).requires_grad_() for t in inputs[:3]]
        rpb = inputs[3].detach().float().cuda().requires_grad_()  # the bias parameter stays fp32 under autocast
        assert _resolve("auto", got_inputs[0], IMPLS, shape[0]) == "flex"
        out = na2d(*got_inputs, rpb, shape[0], impl="auto")
        assert out.dtype == dtype and relative_error(out, want) < out_tol, (shape, relative_error(out, want))
        grads = torch.autograd.grad(out, [*got_inputs, rpb], seed.to("cuda", dtype))
        for name, got, expected in zip("q k v rpb".split(), grads, want_grads):
            assert torch.isfinite(got).all() and relative_error(got, expected) < grad_tol, (shape, name)


def compiled_graphs() -> int:
    """Graphs dynamo has compiled in this process so far."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def test_compiled_graphs_count_a_recompile_per_size_only_without_dynamic_shapes():
    # the counter the CUDA test below relies on, checked with torch's eager backend (no compiler needed)
    def double(x):
        return x * 2

    for dynamic, graphs in ((False, 2), (True, 1)):
        torch._dynamo.reset()
        start = compiled_graphs()
        f = torch.compile(double, backend="eager", dynamic=dynamic)
        f(torch.randn(3, 5))
        f(torch.randn(4, 7))
        assert compiled_graphs() - start == graphs


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_one_compiled_flex_graph_serves_two_evaluation_sizes():
    from pna.ops import na2d

    torch._dynamo.reset()  # the flex kernel compiles anew here (it is cached per process otherwise)
    counts = []
    for height, width in ((40, 57), (48, 80)):  # >= 2 tiles per axis: no size-1 specialisation
        q, k, v, rpb = (t.float().cuda() for t in make_inputs(9, height, width, 1, 4, 32, 32, grad=False))
        with torch.no_grad():
            out = na2d(q, k, v, rpb, 9)
        expected = na2d(q, k, v, rpb, 9, impl="slots")
        torch.testing.assert_close(out, expected, atol=2e-4, rtol=1e-3)
        counts.append(compiled_graphs())
    assert counts[0] >= 1, "nothing was compiled: the flex path did not run compiled"
    assert counts[1] == counts[0], f"the second size compiled {counts[1] - counts[0]} more graph(s)"


def _tiny_overrides(cache: Path, device: str) -> list[str]:
    # tests/test_train.py's tiny model; the dense NA path (plain matmuls): the flex kernel has its own tests above
    return [f"data.root={cache}", "data.options={'num_train': 8, 'num_val': 2, 'size': 32, 'seed': 0}",
            "data.crop=(32, 32)", "data.scale_range=(1.0, 1.0)", "data.photometric=False",
            "train.batch_size=4", "train.checkpoint_interval=0", "train.log_interval=1", "train.eval_interval=0",
            f"train.device={device}", "eval.batch_size=2", "model.overrides.embed_dims=(32, 32, 32, 32)",
            "model.overrides.head_channels=16", "model.overrides.aux_channels=16", "model.overrides.window_size=3",
            "model.overrides.na_impl='dense'"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


def _amp_trainer(device: str, cache: Path, tmp_path: Path, clip: float | None):
    from pna.configs import load_config
    from pna.engine.rundir import RunDir
    from pna.engine.train import Trainer

    cfg = load_config("voc/fcn_r50_os32_pna", "smoke", _tiny_overrides(cache, device) + [
        "train.amp=True", f"optim.clip_grad={clip}", "optim.warmup_iters=0"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random-init backbone
        trainer = Trainer(cfg, RunDir(tmp_path / "run"), torch.device(device), resume=False, progress=False)
    if device == "cuda":
        assert trainer.amp and trainer.scaler.is_enabled()  # the loop's own choice on CUDA
    trainer.amp = True  # the loop enables AMP on CUDA only; on CPU its bf16 autocast runs the same code
    # a moderate start: the default 2^16 may overflow a random-init model's fp16 gradients and skip steps by itself
    trainer.scaler = torch.amp.GradScaler(device, init_scale=2.0 ** 10)
    items = [trainer.train_set[i] for i in range(4)]
    batch = {key: torch.stack([item[key] for item in items]) for key in ("image", "label")}
    return trainer, batch


def _parameters(model) -> dict:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("device", DEVICES)
def test_an_inf_gradient_skips_the_step_and_halves_the_scale(device, cache, tmp_path):
    trainer, batch = _amp_trainer(device, cache, tmp_path, clip=None)
    model, scale = trainer.model, trainer.scaler.get_scale()
    before = _parameters(model)
    weight = next(p for p in model.parameters() if p.requires_grad)
    hook = weight.register_hook(lambda grad: torch.full_like(grad, float("inf")))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the scheduler steps although the optimiser skipped
        trainer.train_step(batch, False)
    hook.remove()
    assert trainer.scaler.get_scale() == scale / 2
    assert all(p.equal(before[name]) for name, p in model.named_parameters()), "a skipped step changed weights"
    trainer.train_step(batch, False)  # finite gradients: the step is taken, the scale kept (growth after 2000 steps)
    assert trainer.scaler.get_scale() == scale / 2
    assert sum(not p.equal(before[name]) for name, p in model.named_parameters()) > len(before) // 2


@pytest.mark.parametrize("device", DEVICES)
def test_clipping_acts_on_the_unscaled_gradients(device, cache, tmp_path):
    clip = 0.01  # the Detectron2 rows' full-model clip: far below a random-init model's gradient norm
    trainer, batch = _amp_trainer(device, cache, tmp_path, clip=clip)
    trainer.train_step(batch, False)
    grads = [p.grad for p in trainer.model.parameters() if p.grad is not None]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])).item()
    # clipped after unscaling: exactly the clip; before unscaling: clip / scale; not at all: the raw norm
    assert norm == pytest.approx(clip, rel=1e-3)


_DROPOUT_FORWARD = {cls: cls.forward for cls in (torch.nn.Dropout, torch.nn.Dropout2d)}  # torch's own


def _recording_dropout(masks: list):
    """Dropout forwards that first record the mask they are about to draw (same generator state)."""
    originals = _DROPOUT_FORWARD
    draw = {torch.nn.Dropout: F.dropout, torch.nn.Dropout2d: F.dropout2d}

    def wrap(cls):
        def forward(self, x):
            if self.training and self.p > 0:
                devices = [x.device.index or 0] if x.is_cuda else []  # the CPU generator is always forked
                with torch.random.fork_rng(devices=devices):
                    masks.append((draw[cls](torch.ones_like(x), self.p, True) != 0).cpu())
            return originals[cls](self, x)
        return forward

    return {cls: wrap(cls) for cls in originals}


@pytest.mark.parametrize("device", DEVICES)
def test_a_resumed_run_draws_the_dropout_masks_of_an_uninterrupted_one(device, cache, tmp_path, monkeypatch):
    from pna.configs import load_config
    from pna.engine.train import train

    cfg = load_config("voc/fcn_r50_os32_pna", "smoke", _tiny_overrides(cache, device) + ["train.iters=3"])
    runs = {}
    for run, stops in (("whole", [None]), ("resumed", [1, None])):
        masks: list = []
        for cls, forward in _recording_dropout(masks).items():
            monkeypatch.setattr(cls, "forward", forward)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for stop in stops:
                train(cfg, tmp_path / run, write_results=False, progress=False, stop_after=stop)
        runs[run] = masks
    whole, resumed = runs["whole"], runs["resumed"]
    per_iter = len(whole) // 3
    assert per_iter >= 1 and len(whole) == len(resumed) == 3 * per_iter
    # iterations draw different masks, so a resume that restarted the generator would be seen
    assert any(not a.equal(b) for a, b in zip(whole[:per_iter], whole[per_iter:2 * per_iter]))
    assert all(a.equal(b) for a, b in zip(whole, resumed))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _syncbn_worker(rank: int, world: int, port: int, device_type: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))
    from pna.engine import distributed as dist

    device = dist.init_from_env(device_type)  # NCCL on CUDA, gloo on CPU
    net = _syncbn_net(device)
    x = _syncbn_batch()[2 * rank:2 * rank + 2].to(device)  # this rank's half of the joint batch
    out_rank = net(x)
    out_rank.square().mean().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    for grad in grads:  # what DDP does: the mean over the ranks
        torch.distributed.all_reduce(grad)
        grad /= world
    bn = net[1]
    torch.save({"out": out_rank.detach().cpu(), "grads": [g.cpu() for g in grads], "type": type(bn).__name__,
                "running": (bn.running_mean.cpu(), bn.running_var.cpu())}, f"{out}/rank{rank}.pt")
    dist.cleanup()


def _syncbn_net(device):
    from pna.engine.distributed import convert_sync_batchnorm

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 4, 1))
    return convert_sync_batchnorm(net, device).to(device) if device is not None else net


def _syncbn_batch() -> torch.Tensor:
    return torch.randn(4, 3, 10, 12, generator=torch.Generator().manual_seed(1)) * 3 + 1


@pytest.mark.slow
@pytest.mark.parametrize("device", [pytest.param("cpu"), pytest.param("cuda", marks=[
    pytest.mark.cuda, pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs (NCCL)")])])
def test_synchronised_batchnorm_over_two_processes_equals_batchnorm_over_their_batch(device, tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_syncbn_worker, args=(2, _free_port(), device, str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    assert {r["type"] for r in ranks} == {"SyncBatchNorm" if device == "cuda" else "GlobalBatchNorm2d"}
    net = _syncbn_net(None).double()  # one process, plain BatchNorm2d over the joint batch of 4
    out = net(_syncbn_batch().double())
    out.square().mean().backward()
    torch.testing.assert_close(torch.cat([r["out"] for r in ranks]).double(), out.detach(), rtol=1e-4, atol=1e-5)
    for rank in ranks:
        for got, want in zip(rank["grads"], [p.grad for p in net.parameters()]):
            torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-6)
        for got, want in zip(rank["running"], (net[1].running_mean, net[1].running_var)):
            torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=1e-6)
