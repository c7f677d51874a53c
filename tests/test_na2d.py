"""Neighbourhood attention: reference, slots, dense and tiled paths against a per-pixel brute force."""
import csv
import math
import warnings
from collections import defaultdict
from pathlib import Path

import pytest
import torch

from pna.ops import na2d, na2d_attn
from pna.ops.na2d import cpu_path
from pna.ops.na2d_dense import fits_dense
from pna.ops.flops import fvcore_handles
from pna.ops.window import window_starts
from na_reference import natten_start  # the window rule, written once for the tests

# (L, H, W): square, non-square, 1xN, Nx1, maps smaller than the window along one or both axes, and
# maps of several 8 x 8 tiles of the tiled path (interior tiles, padded border tiles).
CASES = [(3, 5, 6), (5, 7, 5), (7, 9, 8), (9, 10, 11), (3, 1, 7), (5, 1, 4), (9, 4, 6), (7, 8, 3),
         (11, 12, 13), (11, 5, 14), (9, 19, 26), (5, 17, 9), (3, 18, 1), (11, 1, 20)]


def brute_force(q, k, v, rpb, kernel_size):
    """One pixel at a time, straight from the definition: returns (attn, out)."""
    height, width = q.shape[2:4]
    span_h, span_w = min(kernel_size, height), min(kernel_size, width)
    attn_rows, out_rows = [], []
    for i in range(height):
        attn_row, out_row = [], []
        for j in range(width):
            top, left = natten_start(i, height, kernel_size), natten_start(j, width, kernel_size)
            rows = [top + dy for dy in range(span_h) for dx in range(span_w)]  # slot t = dy * Lw + dx
            cols = [left + dx for dy in range(span_h) for dx in range(span_w)]
            bias = rpb[:, [y - i + kernel_size - 1 for y in rows], [x - j + kernel_size - 1 for x in cols]]
            logits = torch.einsum("bhd,bhtd->bht", q[:, :, i, j], k[:, :, rows, cols]) + bias
            weights = logits.softmax(-1)
            attn_row.append(weights)
            out_row.append(torch.einsum("bht,bhtd->bhd", weights, v[:, :, rows, cols]))
        attn_rows.append(torch.stack(attn_row, 2))
        out_rows.append(torch.stack(out_row, 2))
    return torch.stack(attn_rows, 2), torch.stack(out_rows, 2)


def make_inputs(kernel_size, height, width, batch=2, heads=2, dim=3, dim_v=4, dtype=torch.float64, grad=True):
    q = torch.randn(batch, heads, height, width, dim, dtype=dtype)
    k = torch.randn(batch, heads, height, width, dim, dtype=dtype)
    v = torch.randn(batch, heads, height, width, dim_v, dtype=dtype)
    rpb = torch.randn(heads, 2 * kernel_size - 1, 2 * kernel_size - 1, dtype=dtype)
    return [t.requires_grad_(grad) for t in (q, k, v, rpb)]


def flex_quiet(*args, **kwargs):
    with warnings.catch_warnings():  # eager flex on CPU warns that it is unfused; expected here
        warnings.simplefilter("ignore")
        return na2d(*args, impl="flex", **kwargs)


@pytest.mark.parametrize("kernel_size", [1, 3, 5, 7, 9])
def test_window_starts_follow_spec_formula(kernel_size):
    for n in range(1, 20):
        expected = [natten_start(i, n, kernel_size) for i in range(n)]
        assert window_starts(n, kernel_size).tolist() == expected


@pytest.mark.parametrize("kernel_size,height,width", CASES)
def test_reference_and_fast_match_brute_force_forward_and_grads(kernel_size, height, width):
    inputs = make_inputs(kernel_size, height, width)
    attn_inputs = [inputs[0], inputs[1], inputs[3]]
    expected_attn, expected_out = brute_force(*inputs, kernel_size)
    out_seed, attn_seed = torch.randn_like(expected_out), torch.randn_like(expected_attn)
    expected_grads = torch.autograd.grad(expected_out, inputs, out_seed, retain_graph=True)
    expected_attn_grads = torch.autograd.grad(expected_attn, attn_inputs, attn_seed)
    for impl in ("reference", "slots", "dense", "tiled"):
        out = na2d(*inputs, kernel_size, impl=impl)
        torch.testing.assert_close(out, expected_out, msg=lambda m: f"{impl} out: {m}")
        grads = torch.autograd.grad(out, inputs, out_seed)
        for name, got, want in zip("q k v rpb".split(), grads, expected_grads):
            torch.testing.assert_close(got, want, msg=lambda m: f"{impl} grad of {name}: {m}")
        if impl == "tiled":  # the tiled path does not expose the weights
            continue
        attn = na2d_attn(*attn_inputs[:2], inputs[3], kernel_size, impl=impl)
        torch.testing.assert_close(attn, expected_attn, msg=lambda m: f"{impl} attn: {m}")
        attn_grads = torch.autograd.grad(attn, attn_inputs, attn_seed)
        for name, got, want in zip("q k rpb".split(), attn_grads, expected_attn_grads):
            torch.testing.assert_close(got, want, msg=lambda m: f"{impl} attn grad of {name}: {m}")


@pytest.mark.parametrize("kernel_size,height,width", [(3, 4, 5), (5, 5, 3), (7, 2, 9), (9, 3, 3), (5, 11, 10)])
def test_fast_and_tiled_gradcheck(kernel_size, height, width):
    # fast_mode checks random projections of the Jacobian: few evaluations, same guarantee in practice
    inputs = make_inputs(kernel_size, height, width, batch=1, heads=2, dim=2, dim_v=2)
    assert torch.autograd.gradcheck(lambda *x: na2d(*x, kernel_size, impl="slots"), inputs, fast_mode=True)
    attn_inputs = [inputs[0], inputs[1], inputs[3]]
    attn_fn = lambda q, k, b: na2d_attn(q, k, b, kernel_size, impl="slots")  # noqa: E731
    assert torch.autograd.gradcheck(attn_fn, attn_inputs, fast_mode=True)
    assert torch.autograd.gradcheck(lambda *x: na2d(*x, kernel_size, impl="tiled"), inputs, fast_mode=True)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (compiled flex_attention path)")
def test_flex_matches_fast_on_cuda_realistic_shape():
    inputs = [t.detach().cuda().requires_grad_() for t in make_inputs(9, 64, 64, 2, 6, 32, 32, torch.float32)]
    with torch.no_grad():
        inputs[0].mul_(32**-0.5)
    out = na2d(*inputs, 9, impl="auto")  # auto = flex on CUDA
    expected = na2d(*inputs, 9, impl="slots")
    torch.testing.assert_close(out, expected, atol=2e-4, rtol=1e-3)
    seed = torch.randn_like(out)
    for got, want in zip(torch.autograd.grad(out, inputs, seed), torch.autograd.grad(expected, inputs, seed)):
        torch.testing.assert_close(got, want, atol=2e-3, rtol=2e-3)


@pytest.mark.parametrize("impl", ["reference", "slots", "dense", "tiled", "flex"])
def test_corner_and_border_queries_attend_the_clamped_window(impl):
    height, width, kernel_size = 8, 7, 5
    q = k = torch.zeros(1, 1, height, width, 2, dtype=torch.float64)  # uniform weights over the window
    v = torch.eye(height * width, dtype=torch.float64).view(1, 1, height, width, -1)  # one-hot pixel ids
    rpb = torch.zeros(1, 9, 9, dtype=torch.float64)
    out = flex_quiet(q, k, v, rpb, kernel_size) if impl == "flex" else na2d(q, k, v, rpb, kernel_size, impl=impl)
    for (i, j), (rows, cols) in {(0, 0): (range(0, 5), range(0, 5)), (7, 6): (range(3, 8), range(2, 7)),
                                 (7, 3): (range(3, 8), range(1, 6)), (4, 1): (range(2, 7), range(0, 5))}.items():
        expected = torch.zeros(height, width, dtype=torch.float64)
        expected[rows.start:rows.stop, cols.start:cols.stop] = 1 / 25
        torch.testing.assert_close(out[0, 0, i, j].view(height, width), expected)


@pytest.mark.parametrize("impl", ["reference", "slots", "dense"])
def test_bias_offset_direction_and_small_map_slots(impl):
    kernel_size, height, width = 7, 3, 10  # 3 rows < L: the window covers all rows, Lh * Lw = 21 slots
    q = k = torch.zeros(1, 1, height, width, 2)
    rpb = torch.full((1, 13, 13), -30.0)
    rpb[0, 6 + 1, 6 + 2] = 30.0  # favour the key one row down and two columns right
    attn = na2d_attn(q, k, rpb, kernel_size, impl=impl)
    assert attn.shape == (1, 1, height, width, 3 * 7)
    torch.testing.assert_close(attn.sum(-1), torch.ones(1, 1, height, width))
    # query (1, 2): window rows 0..2, cols 0..6 -> key (2, 4) is slot dy=2, dx=4
    assert attn[0, 0, 1, 2].argmax().item() == 2 * 7 + 4
    assert attn[0, 0, 1, 2].max().item() > 0.99


@pytest.mark.parametrize("impl", ["slots", "tiled"])
@pytest.mark.parametrize("dtype,atol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_fast_and_tiled_low_precision(impl, dtype, atol):
    inputs64 = make_inputs(5, 9, 7, dim=8, dim_v=8, grad=False)
    inputs = [t.to(dtype).requires_grad_() for t in inputs64]
    out = na2d(*inputs, 5, impl=impl)
    assert out.dtype == dtype
    expected = na2d(*[t.to(dtype).double() for t in inputs64], 5, impl="reference")
    torch.testing.assert_close(out.double(), expected, atol=atol, rtol=atol)
    out.float().square().sum().backward()
    for t in inputs:
        assert t.grad.dtype == dtype and torch.isfinite(t.grad).all()


def _bad_inputs():
    q, k, v, rpb = make_inputs(3, 4, 5, grad=False)
    return {
        "even kernel": ((q, k, v, rpb, 4), "odd int"),
        "zero kernel": ((q, k, v, rpb, 0), "odd int"),
        "float kernel": ((q, k, v, rpb, 3.0), "odd int"),
        "q ndim": ((q[0], k, v, rpb, 3), r"q must have shape \(B, heads, H, W, dim\)"),
        "k shape": ((q, k[..., :2], v, rpb, 3), r"k must have the shape of q \(2, 2, 4, 5, 3\)"),
        "v shape": ((q, k, v[:, :, :3], rpb, 3), r"v must have shape \(2, 2, 4, 5\)"),
        "rpb shape": ((q, k, v, rpb[:, :4, :4], 3), r"rpb must have shape \(heads, 2L-1, 2L-1\) = \(2, 5, 5\)"),
        "rpb heads": ((q, k, v, rpb[:1], 3), r"\(2, 5, 5\)"),
        "dtype": ((q, k.float(), v, rpb, 3), "k must have q's dtype"),
        "rpb dtype": ((q, k, v, rpb.long(), 3), "rpb must have q's dtype"),
        "device": ((q, k, v.to("meta"), rpb, 3), "v must have q's dtype and device"),
        "not a tensor": ((q, k, v.tolist(), rpb, 3), "v must be a torch.Tensor"),
    }


@pytest.mark.parametrize("case", list(_bad_inputs()))
def test_bad_inputs_raise_value_error(case):
    args, message = _bad_inputs()[case]
    with pytest.raises(ValueError, match=message):
        na2d(*args)
    if case not in ("v shape", "device", "not a tensor"):
        with pytest.raises(ValueError, match=message):
            na2d_attn(args[0], args[1], args[3], args[4])


def test_unknown_impl_raises_value_error():
    q, k, v, rpb = make_inputs(3, 4, 5, grad=False)
    with pytest.raises(ValueError, match="impl must be one of"):
        na2d(q, k, v, rpb, 3, impl="cuda")
    with pytest.raises(ValueError, match="impl must be one of"):
        na2d_attn(q, k, rpb, 3, impl="flex")  # flex does not expose the weights


class _TinyNA(torch.nn.Module):
    def __init__(self, heads: int, kernel_size: int, impl: str):
        super().__init__()
        self.kernel_size, self.impl = kernel_size, impl
        self.rpb = torch.nn.Parameter(torch.zeros(heads, 2 * kernel_size - 1, 2 * kernel_size - 1))

    def forward(self, q, v):
        # The slots and tiled paths are autograd Functions: opaque to the tracer, counted by the handles.
        return na2d(q, q, v, self.rpb, self.kernel_size, impl=self.impl)


@pytest.mark.parametrize("height, width", [(6, 9), (3, 9), (6, 2)])  # the last two: one side shorter than L
@pytest.mark.parametrize("impl", ["slots", "tiled"])
def test_fvcore_counts_neighbourhood_products(impl, height, width):
    from fvcore.nn import FlopCountAnalysis

    batch, heads, dim, dim_v, kernel_size = 2, 3, 8, 5, 5
    q = torch.randn(batch, heads, height, width, dim)
    v = torch.randn(batch, heads, height, width, dim_v)
    model = _TinyNA(heads, kernel_size, impl).eval()
    with torch.no_grad():
        torch.jit.trace(model, (q, v))  # the model profiler traces in eval/no_grad mode
        flops = FlopCountAnalysis(model, (q, v)).set_op_handle(**fvcore_handles())
        flops.unsupported_ops_warnings(False)
        total = flops.total()
    window = min(kernel_size, height) * min(kernel_size, width)  # every query meets Lh x Lw real keys
    assert total == batch * heads * height * width * window * (dim + dim_v)


def _recorded_inside_functions(kernel_size: int) -> tuple[int, torch.nn.Module]:
    """Nodes a jit trace of the slots path records inside its autograd Functions, and the traced module."""
    q, v = torch.randn(1, 2, 14, 14, 8), torch.randn(1, 2, 14, 14, 4)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        traced = torch.jit.trace(_TinyNA(2, kernel_size, "slots").eval(), (q, v), check_trace=False)
    functions = [n for n in traced.graph.nodes() if n.kind() == "prim::PythonOp"]
    assert len(functions) == 2  # QK and AV
    return sum(len(list(n.g("Subgraph").nodes())) for n in functions), traced


def test_a_trace_does_not_record_the_slot_loops_and_the_traced_module_still_runs_them():
    # The slot loops record ops per window slot when traced (a 9-slot window: thousands of nodes; a smoke
    # PNA model took 10 s to trace for its FLOPs): recorded, the count would grow with the window.
    small, _ = _recorded_inside_functions(3)
    large, traced = _recorded_inside_functions(7)
    assert small == large
    q, v = torch.randn(1, 2, 14, 14, 8), torch.randn(1, 2, 14, 14, 4)  # other values than the trace's
    rpb = torch.zeros(2, 13, 13)
    with torch.no_grad():
        torch.testing.assert_close(traced(q, v), na2d(q, q, v, rpb, 7, impl="reference"))


DISPATCH_CSV = Path(__file__).resolve().parents[1] / "results" / "benchmarks" / "na_dispatch_cpu.csv"
# Two paths whose summed times differ by less than this are a tie: the closest measured call, L = 3 on a
# 16 x 16 map, has dense 10% ahead of slots in total while 1 head favours dense (2.3x) and 6 heads
# favour slots (1.1x); the CPU the table was measured on is shared (load_avg_1min column).
DISPATCH_NOISE = 1.15


def measured_dispatch() -> dict[tuple[int, int, int], dict[str, float]]:
    """Per (L, H, W): each path's CPU time summed over the measured (batch, heads) cases; a path not
    measured in every case (dense where its score matrix does not fit) counts as infinitely slow."""
    cases, times = defaultdict(set), defaultdict(lambda: defaultdict(dict))
    with DISPATCH_CSV.open(newline="") as f:
        for row in csv.DictReader(f):
            key, case = (int(row["L"]), int(row["H"]), int(row["W"])), (row["B"], row["heads"])
            cases[key].add(case)
            times[key][row["impl"]][case] = float(row["cpu_ms"])
    return {key: {impl: sum(t.values()) if set(t) == cases[key] else math.inf for impl, t in paths.items()}
            for key, paths in times.items()}


TORCH_PATHS = {"dense", "tiled", "slots"}


@pytest.mark.parametrize("native", [False, True])  # the pure-torch table, and the one with the C++ kernel
def test_cpu_path_is_the_fastest_measured_path(native):
    measured = measured_dispatch()
    assert {impl for totals in measured.values() for impl in totals} == TORCH_PATHS | {"native"}
    assert len({k[0] for k in measured}) >= 3 and len(measured) >= 20  # the table covers windows and sizes
    contenders = TORCH_PATHS | ({"native"} if native else set())
    for (kernel, height, width), totals in measured.items():
        totals = {impl: t for impl, t in totals.items() if impl in contenders}
        chosen, best = cpu_path(height, width, kernel, native), min(totals, key=totals.get)
        assert totals[chosen] <= DISPATCH_NOISE * totals[best], (
            f"L={kernel}, {height}x{width}: cpu_path picks {chosen} ({totals[chosen]:.1f} ms), {best} took {totals[best]:.1f} ms")
    # beyond the measured sizes (the stride-4 map of a 512 crop is 128 x 128): the path fastest on the
    # largest measured map of that window
    for kernel in {k[0] for k in measured}:
        largest = max((k for k in measured if k[0] == kernel), key=lambda k: k[1] * k[2])
        totals = {impl: t for impl, t in measured[largest].items() if impl in contenders}
        assert totals[cpu_path(128, 128, kernel, native)] <= DISPATCH_NOISE * min(totals.values()), f"L={kernel}, 128x128"


def test_auto_dispatch_falls_back_where_dense_scores_do_not_fit():
    from pna.ops.na2d import _resolve

    measured = measured_dispatch()
    for kernel in {k[0] for k in measured}:
        # the largest measured map on which dense wins, with 64 x 24 score matrices: too many to fit
        _, height, width = max((k for k in measured if k[0] == kernel and cpu_path(k[1], k[2], kernel, False) == "dense"),
                               key=lambda k: k[1] * k[2])
        crowded = torch.zeros(64, 24, height, width, 1)
        assert not fits_dense(crowded)
        path = _resolve("auto", crowded, ("auto", "dense", "tiled", "slots"), kernel)
        totals = {impl: t for impl, t in measured[(kernel, height, width)].items() if impl in TORCH_PATHS - {"dense"}}
        assert path != "dense" and totals[path] <= DISPATCH_NOISE * min(totals.values()), f"L={kernel}, {height}x{width}"
    # na2d_attn (no tiled path: the weights come from dense or the slot loop) on a large map
    assert _resolve("auto", torch.zeros(2, 3, 128, 128, 1), ("auto", "reference", "slots", "dense"), 9) == "slots"
    # a window outside the table takes the nearest measured one's path
    for native in (False, True):
        assert all(cpu_path(h, w, 13, native) == cpu_path(h, w, max(k[0] for k in measured), native) for _, h, w in measured)