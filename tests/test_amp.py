"""Mixed precision: every neighbourhood-attention path and a whole PNA model under CPU autocast.

Under ``torch.autocast`` q, k and v leave the NAM's ``nn.Linear`` layers in half precision while
the relative position bias stays a float32 parameter; na2d casts the bias inside the op, so the
parameter and its gradient stay float32. Tolerances (relative L2 error against the float32 run of
the same weights): bf16 keeps 8 significant bits (2^-8 = 0.4% per rounding), fp16 11 bits.

- op level (NAM: three Linear layers around na2d): output 2% (bf16) / 0.5% (fp16), measured
  0.3-0.4% / 0.04%; rpb gradient 5% / 1%, measured 0.6-1.5% / 0.1-0.2%.
- whole model (FCN + four refinement stages, BatchNorm on running statistics): refined logits
  P1-P4 10%, measured 0.7-2.1%; rpb gradients of the stages whose map is larger than the window
  30%, measured 4-7% (the gradient of a bias is a sum of terms that cancel: bf16 is noisy there).
"""
import warnings

import pytest
import torch

from pna.models import NeighbourhoodAggregation, create_model

LOW = {torch.bfloat16: (2e-2, 5e-2), torch.float16: (5e-3, 1e-2)}  # (output, rpb grad) relative L2


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.float() - want.float()).norm() / want.float().norm()).item()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("impl", ["reference", "slots", "dense", "tiled", "flex"])
def test_every_na_path_runs_under_autocast(impl, dtype):
    nam = NeighbourhoodAggregation(dim=64, num_heads=2, window_size=5, impl=impl)
    x, v = torch.randn(2, 9, 11, 64), torch.randn(2, 9, 11, 64)
    trains = impl != "flex"  # flex_attention has no CPU backward
    out_tol, grad_tol = LOW[dtype]
    with warnings.catch_warnings(), torch.set_grad_enabled(trains):
        warnings.simplefilter("ignore")  # eager flex on CPU warns that it is unfused
        expected = nam(x, v)
        if trains:
            expected.square().sum().backward()
            expected_grad, nam.rpb.grad = nam.rpb.grad, None
        with torch.autocast("cpu", dtype=dtype):
            out = nam(x, v)
    assert out.dtype == dtype  # the projection ran in half precision, so did q, k and v
    assert relative_error(out, expected) < out_tol
    if trains:
        out.float().square().sum().backward()
        assert nam.rpb.dtype == nam.rpb.grad.dtype == torch.float32
        assert relative_error(nam.rpb.grad, expected_grad) < grad_tol
        assert all(torch.isfinite(p.grad).all() for p in nam.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("na_impl", ["auto", "tiled"])
def test_pna_model_trains_under_bf16_autocast(na_impl):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random-init backbone warning
        model = create_model("fcn_r50_os32_pna", 5, backbone="resnet18c", embed_dims=(64, 32, 32, 32),
                             head_channels=16, window_size=3, na_impl=na_impl).train()
    for module in model.modules():  # batch 1 on a 2x2 map: batch statistics would amplify any rounding
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.eval()
    images = torch.randn(1, 3, 64, 64)

    def step():
        outputs = model(images)
        sum(o.float().square().mean() for o in outputs.values()).backward()
        rpb = [nam.rpb for nam in model.modules() if isinstance(nam, NeighbourhoodAggregation)]
        grads = [p.grad.clone() for p in rpb]
        model.zero_grad(set_to_none=True)
        return {k: o.detach() for k, o in outputs.items()}, rpb, grads

    expected, _, expected_grads = step()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs, rpb, grads = step()
    for name in ("P1", "P2", "P3", "P4"):
        assert outputs[name].dtype == torch.bfloat16
        assert relative_error(outputs[name], expected[name]) < 0.1, name
    assert all(p.dtype == g.dtype == torch.float32 and torch.isfinite(g).all() for p, g in zip(rpb, grads))
    # stages 2-4 (4x4, 8x8, 16x16 maps, L = 3); stage 1's 2x2 map is inside one window
    for got, want in zip(grads[1:], expected_grads[1:]):
        assert relative_error(got, want) < 0.3
