"""Mixed precision: every neighbourhood-attention path and a whole PNA model under CPU autocast.

Under ``torch.autocast`` q, k and v leave the NAM's ``nn.Linear`` layers in half precision while
the relative position bias stays a float32 parameter; na2d casts the bias inside the op, so the
parameter and its gradient stay float32. Errors are relative L2 errors against the float32 run of
the same weights; every test prints them (``pytest -s``).

Tolerances: 1.5x the largest error measured over seeds 0-4 (the tests run seed 0) on the CPU, rounded
up to two significant digits; measured with torch 2.x on this repository's CPU paths:
- op level (NAM: three Linear layers around na2d; 2 x 9 x 11 map, D = 64, 2 heads, L = 5):
  output bf16 0.31-0.38% (max 0.376%) -> 0.57%; fp16 0.038-0.045% (max 0.045%) -> 0.068%;
  rpb gradient bf16 0.48-1.41% (max 1.41%) -> 2.2%; fp16 0.06-0.20% (max 0.197%) -> 0.30%.
- whole model (FCN + four refinement stages, BatchNorm on running statistics, bf16): refined logits
  P1-P4 0.36-2.74% (max 2.74%) -> 4.2%; rpb gradients of the stages whose map is larger than the
  window 1.8-14.8% (max 14.8%) -> 23% (the gradient of a bias is a sum of terms that cancel: bf16 is
  noisy there).
"""
import warnings

import pytest
import torch

from pna.models import NeighbourhoodAggregation, create_model

# (output, rpb grad) relative L2, see the module docstring for the measured values and the margin
LOW = {torch.bfloat16: (5.7e-3, 2.2e-2), torch.float16: (6.8e-4, 3.0e-3)}
MODEL_LOGITS_TOL, MODEL_RPB_GRAD_TOL = 4.2e-2, 0.23


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
    error = relative_error(out, expected)
    print(f"\n{impl} {dtype}: output error {error:.5f}")
    assert error < out_tol
    if trains:
        out.float().square().sum().backward()
        assert nam.rpb.dtype == nam.rpb.grad.dtype == torch.float32
        error = relative_error(nam.rpb.grad, expected_grad)
        print(f"{impl} {dtype}: rpb gradient error {error:.5f}")
        assert error < grad_tol
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
        error = relative_error(outputs[name], expected[name])
        print(f"{na_impl} {name}: logits error {error:.4f}")
        assert error < MODEL_LOGITS_TOL, name
    assert all(p.dtype == g.dtype == torch.float32 and torch.isfinite(g).all() for p, g in zip(rpb, grads))
    # stages 2-4 (4x4, 8x8, 16x16 maps, L = 3); stage 1's 2x2 map is inside one window
    for stage, got, want in zip(("P2", "P3", "P4"), grads[1:], expected_grads[1:]):
        error = relative_error(got, want)
        print(f"{na_impl} {stage}: rpb gradient error {error:.4f}")
        assert error < MODEL_RPB_GRAD_TOL, stage


# Unit roundoff (half an ulp, relative) of the half formats: 8 and 11 significant bits.
UNIT_ROUNDOFF = {torch.bfloat16: 2.0 ** -8, torch.float16: 2.0 ** -11}
# What float32 accumulation may add over a 32-channel or 25-slot sum: far below one half rounding.
FLOAT32_SLACK = 1e-6


def assert_one_rounding(got: torch.Tensor, exact: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    """``got`` (half) is ``exact`` (float64) rounded once: |got - exact| <= u |exact| element-wise, plus
    the float32 slack relative to the largest entry. Computing in half precision breaks this bound."""
    excess = (got.double() - exact).abs() - UNIT_ROUNDOFF[dtype] * exact.abs()
    worst = excess.max().item() / exact.abs().max().item()
    print(f"{what} {dtype}: worst excess over one rounding {worst:.2e} of the largest entry")
    assert worst <= FLOAT32_SLACK, what


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_hand_written_paths_compute_half_inputs_in_float32(dtype):
    """The slot-loop products (q.k and attn.v) and the tiled path take half-precision inputs, compute in
    float32 and round their results once (docs of pna.ops.na2d_cpu / na2d_tiled)."""
    from pna.ops.na2d_cpu import NeighbourhoodAV, NeighbourhoodQK
    from pna.ops.na2d_reference import gather_windows
    from pna.ops import na2d

    kernel = 5
    q, k, v, grad = (torch.randn(2, 2, 9, 11, 32).to(dtype) for _ in range(4))
    rpb = torch.randn(2, 2 * kernel - 1, 2 * kernel - 1)
    # slots: each product on its own, against float64 sums of the same half-precision values
    logits = NeighbourhoodQK.apply(q, k, kernel)
    exact_logits = torch.einsum("bhijd,bhijtd->bhijt", q.double(), gather_windows(k.double(), kernel))
    assert logits.dtype == dtype
    assert_one_rounding(logits, exact_logits, dtype, "slots q.k")
    attn = exact_logits.softmax(-1).to(dtype)
    out = NeighbourhoodAV.apply(attn, v, kernel)
    assert_one_rounding(out, torch.einsum("bhijt,bhijtd->bhijd", attn.double(), gather_windows(v.double(), kernel)),
                        dtype, "slots attn.v")
    # tiled: the whole attention and its gradients, against the float64 reference
    inputs = [t.clone().requires_grad_() for t in (q, k, v)]
    bias = rpb.clone().requires_grad_()
    na2d(*inputs, bias, kernel, impl="tiled").backward(grad)
    exact_inputs = [t.double().requires_grad_() for t in (q, k, v)]
    exact_bias = rpb.double().requires_grad_()
    exact = na2d(*exact_inputs, exact_bias, kernel, impl="reference")
    exact.backward(grad.double())
    assert_one_rounding(na2d(q, k, v, rpb, kernel, impl="tiled"), exact.detach(), dtype, "tiled output")
    for name, got, want in zip("qkv", inputs, exact_inputs):
        assert_one_rounding(got.grad, want.grad, dtype, f"tiled grad {name}")
    # the bias gradient stays float32: float32 accuracy, no half rounding
    assert bias.grad.dtype == torch.float32
    assert ((bias.grad.double() - exact_bias.grad).abs().max() / exact_bias.grad.abs().max()).item() <= 1e-5
