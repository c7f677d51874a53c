"""The fused CPU kernel (pna/ops/na2d_kernel.cpp through pna/ops/na2d_native.py) against the float64
definition: forward, weights and the gradients of q, k, v and the bias, on maps smaller than the
window, non-square maps, every border case, strided inputs (the NAM's head views), one and two
threads (a plane split between threads mid-map), float32 / bfloat16; and the pure-torch fallback
when the kernel cannot be built or is switched off."""
import warnings

import pytest
import torch

from pna.ops import na2d, na2d_attn, native
from pna.ops.na2d_native import na2d_native, supports

from test_na2d import brute_force, make_inputs

requires_kernel = pytest.mark.skipif(not native.available(), reason="no C++ compiler: the kernel cannot be built")

# (L, H, W, batch, heads): square and non-square, maps narrower / shorter than the window, one
# pixel, one row, several vectors of 8 / 16 columns with clamped columns inside them, L up to 13
SHAPES = [(3, 5, 6, 2, 2), (5, 7, 5, 1, 3), (9, 4, 6, 1, 2), (9, 19, 26, 1, 1), (7, 8, 3, 2, 1), (1, 4, 5, 1, 2),
          (3, 1, 1, 1, 1), (9, 1, 20, 2, 1), (11, 12, 13, 1, 2), (9, 16, 16, 1, 2), (5, 9, 37, 1, 1),
          (13, 14, 40, 1, 1), (7, 33, 9, 3, 1)]


def _float64_expectation(inputs, kernel_size):
    attn, out = brute_force(*inputs, kernel_size)
    seed = torch.randn_like(out)
    return attn.detach(), out.detach(), seed, torch.autograd.grad(out, inputs, seed)


@requires_kernel
@pytest.mark.parametrize("kernel_size,height,width,batch,heads", SHAPES)
@pytest.mark.parametrize("threads", [1, 2])
def test_native_matches_the_definition_in_float64(kernel_size, height, width, batch, heads, threads):
    inputs = make_inputs(kernel_size, height, width, batch, heads, dim=5, dim_v=3)
    attn, out, seed, grads = _float64_expectation(inputs, kernel_size)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        got = na2d(*inputs, kernel_size, impl="native")
        torch.testing.assert_close(got, out, rtol=1e-10, atol=1e-10)
        for name, g, want in zip("q k v rpb".split(), torch.autograd.grad(got, inputs, seed), grads):
            torch.testing.assert_close(g, want, rtol=1e-10, atol=1e-10, msg=lambda m: f"grad of {name}: {m}")
        with torch.no_grad():
            weights = na2d_attn(inputs[0], inputs[1], inputs[3], kernel_size, impl="native")
        torch.testing.assert_close(weights, attn, rtol=1e-10, atol=1e-10)
    finally:
        torch.set_num_threads(previous)


@requires_kernel
@pytest.mark.parametrize("dim,dim_v", [(16, 8), (24, 13)])
def test_native_float64_with_wide_heads(dim, dim_v):
    """Head widths of whole and partial vectors of 8 doubles (the definition tests above use 5 and 3),
    21 columns (two vectors of 8 and a tail of 5), against the float64 definition."""
    inputs = make_inputs(7, 10, 21, 2, 2, dim=dim, dim_v=dim_v)
    attn, out, seed, grads = _float64_expectation(inputs, 7)
    got = na2d(*inputs, 7, impl="native")
    torch.testing.assert_close(got, out, rtol=1e-10, atol=1e-10)
    for name, g, want in zip("q k v rpb".split(), torch.autograd.grad(got, inputs, seed), grads):
        torch.testing.assert_close(g, want, rtol=1e-10, atol=1e-10, msg=lambda m: f"grad of {name}: {m}")


@requires_kernel
@pytest.mark.parametrize("kernel_size,height,width", [(9, 64, 40), (9, 16, 16), (7, 21, 33)])
def test_native_float32_on_the_nam_layout(kernel_size, height, width):
    """q/k/v as the NAM makes them: head views of channels-last projections (channel stride 1, pixel
    stride heads * dim or 2 * heads * dim), dim 32; output and gradients against float64."""
    batch, heads, dim = 2, 3, 32
    qk = torch.randn(batch, height, width, 2 * heads * dim)
    vv = torch.randn(batch, height, width, heads * dim)
    rpb = 0.5 * torch.randn(heads, 2 * kernel_size - 1, 2 * kernel_size - 1)
    leaves = [t.requires_grad_() for t in (qk, vv, rpb)]

    def views(qk, vv):
        q, k = (t.reshape(batch, height, width, heads, dim).permute(0, 3, 1, 2, 4) for t in qk.chunk(2, -1))
        return q * dim ** -0.5, k, vv.reshape(batch, height, width, heads, dim).permute(0, 3, 1, 2, 4)

    out = na2d(*views(qk, vv), rpb, kernel_size, impl="native")
    assert out.shape == (batch, heads, height, width, dim)
    assert out.permute(0, 2, 3, 1, 4).is_contiguous()  # (B, H, W, heads, dim) memory: the projection reads it as is
    leaves64 = [t.detach().double().requires_grad_() for t in leaves]
    expected = na2d(*views(*leaves64[:2]), leaves64[2], kernel_size, impl="reference")
    torch.testing.assert_close(out.double(), expected, rtol=1e-4, atol=1e-5)
    seed = torch.randn_like(expected)
    for got, want in zip(torch.autograd.grad(out, leaves, seed.float()), torch.autograd.grad(expected, leaves64, seed)):
        torch.testing.assert_close(got.double(), want, rtol=1e-4, atol=2e-4)


@requires_kernel
def test_native_bfloat16_computes_in_float32():
    inputs64 = make_inputs(5, 9, 7, dim=8, dim_v=8, grad=False)
    inputs = [t.to(torch.bfloat16).requires_grad_() for t in inputs64]
    out = na2d(*inputs, 5, impl="native")
    assert out.dtype == torch.bfloat16
    expected = na2d(*[t.to(torch.bfloat16).double() for t in inputs64], 5, impl="reference")
    torch.testing.assert_close(out.double(), expected, atol=3e-2, rtol=3e-2)
    out.float().square().sum().backward()
    assert all(t.grad.dtype == torch.bfloat16 and torch.isfinite(t.grad).all() for t in inputs)


@requires_kernel
def test_native_gradcheck():
    inputs = make_inputs(5, 6, 7, batch=1, heads=2, dim=2, dim_v=2)
    assert torch.autograd.gradcheck(lambda *x: na2d_native(*x, 5), inputs, fast_mode=True)


@requires_kernel
def test_auto_picks_the_kernel_on_the_cpu():
    from pna.ops.na2d import _resolve

    q = torch.zeros(1, 3, 128, 128, 32)
    assert _resolve("auto", q, ("auto", "native", "dense", "tiled", "slots"), 9) == "native"
    assert supports(q, 33) and not supports(q, 35)  # the kernel pads rows by 16 columns: L <= 33
    assert not supports(q.long(), 9)


def test_without_the_kernel_auto_falls_back_to_torch_paths(monkeypatch):
    from pna.ops.na2d import _resolve, cpu_path

    monkeypatch.setenv(native.ENV_SWITCH, "0")
    native.library.cache_clear()
    try:
        assert native.library() is None and not supports(torch.zeros(1, 1, 4, 4, 2), 3)
        q = torch.zeros(1, 3, 128, 128, 32)
        assert _resolve("auto", q, ("auto", "native", "dense", "tiled", "slots"), 9) == cpu_path(128, 128, 9)
        inputs = make_inputs(5, 7, 6)
        torch.testing.assert_close(na2d(*inputs, 5), na2d(*inputs, 5, impl="reference"))
        with pytest.raises(ValueError, match="impl='native' needs the C\\+\\+ kernel"):
            na2d(*inputs, 5, impl="native")
    finally:
        native.library.cache_clear()


def test_a_missing_compiler_warns_once_and_falls_back(monkeypatch):
    monkeypatch.setattr(native, "compiler", lambda: None)
    native.library.cache_clear()
    try:
        with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
            assert native.library() is None
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert native.library() is None  # cached: no second warning
    finally:
        native.library.cache_clear()


@requires_kernel
def test_the_build_is_cached_by_source_and_compiler(tmp_path, monkeypatch):
    monkeypatch.setenv("PNA_CACHE_DIR", str(tmp_path))
    cxx = native.compiler()
    out = native.cache_dir() / f"na2d_{native._build_key(cxx)}.so"
    native.build(cxx, out)
    assert out.is_file() and [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary left
    assert native._build_key(cxx) == native._build_key(cxx)  # the same source and compiler: the same file
    with pytest.raises(RuntimeError, match="failed on"):
        monkeypatch.setattr(native, "SOURCE", tmp_path / "broken.cpp")
        (tmp_path / "broken.cpp").write_text("this is not C++\n")
        native.build(cxx, tmp_path / "native" / "broken.so")
    assert not (tmp_path / "native" / "broken.so").exists()
