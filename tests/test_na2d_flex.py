"""The flex path on CPU: 2-D tile order, O(blocks) block mask against the dense one, forward parity."""
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest
import torch
from torch.nn.attention.flex_attention import create_block_mask

from pna.ops.na2d_flex import FLEX_TILE, _flex_plan, from_tile_order, na2d_flex, to_tile_order
from test_na2d import brute_force, make_inputs

ROOT = Path(__file__).resolve().parents[1]
# (L, H, W): smaller than the window, 1xN, Nx1, non-square, several tiles with padded border tiles
SHAPES = [(9, 4, 6), (7, 3, 11), (5, 1, 20), (3, 21, 1), (9, 10, 11), (9, 12, 34), (5, 17, 20), (11, 12, 35), (3, 24, 16)]
TILES = [FLEX_TILE, (4, 4), (2, 8)]


def _rows(mask, full: bool) -> list[list[int]]:
    """Key blocks of every query block (partial or full ones), sorted."""
    counts = (mask.full_kv_num_blocks if full else mask.kv_num_blocks)[0, 0].tolist()
    indices = (mask.full_kv_indices if full else mask.kv_indices)[0, 0]
    return [sorted(indices[i, :n].tolist()) for i, n in enumerate(counts)]


@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("kernel_size,height,width", SHAPES)
def test_block_mask_equals_dense_block_mask(kernel_size, height, width, tile):
    plan = _flex_plan(height, width, kernel_size, "cpu", tile)
    seq = plan.block_mask.seq_lengths[0]
    assert seq % (tile[0] * tile[1]) == 0 and seq >= height * width
    # create_block_mask evaluates the mask_mod on every (query, key) pair: the exact block structure
    dense = create_block_mask(plan.block_mask.mask_mod, None, None, seq, seq, "cpu", BLOCK_SIZE=tile[0] * tile[1])
    assert _rows(plan.block_mask, full=False) == _rows(dense, full=False)
    assert _rows(plan.block_mask, full=True) == _rows(dense, full=True)
    # and the transposed (query-side) tables that the backward uses agree as well
    assert plan.block_mask.to_dense().equal(dense.to_dense())


@pytest.mark.parametrize("tile", [FLEX_TILE, (3, 5)])
def test_tile_order_round_trip(tile):
    x = torch.randn(2, 3, 11, 19, 4)
    seq = to_tile_order(x, tile)
    assert seq.shape[2] == -(-11 // tile[0]) * tile[0] * -(-19 // tile[1]) * tile[1]
    assert from_tile_order(seq, 11, 19, tile).equal(x)
    # a block of the sequence is one 2-D patch of the map
    ids = torch.arange(11 * 19.).view(1, 1, 11, 19, 1)
    first_block = to_tile_order(ids, tile)[0, 0, :tile[0] * tile[1], 0].view(tile)
    assert first_block.equal(ids[0, 0, :tile[0], :tile[1], 0])


@pytest.mark.parametrize("kernel_size,height,width", SHAPES)
def test_flex_forward_matches_brute_force_on_cpu(kernel_size, height, width):
    q, k, v, rpb = make_inputs(kernel_size, height, width, grad=False)  # flex has no CPU backward
    with warnings.catch_warnings():  # eager flex on CPU warns that it is unfused: expected here
        warnings.simplefilter("ignore")
        out = na2d_flex(q, k, v, rpb, kernel_size)
    torch.testing.assert_close(out, brute_force(q, k, v, rpb, kernel_size)[1])


@pytest.mark.parametrize("tile", [(1, 16), (4, 4)], ids=["row-major", "4x4"])
def test_flex_forward_with_another_tile_matches_brute_force_on_cpu(tile):
    # benchmarks/na_cuda.py times row-major blocks ((1, 16) on a map 16 wide) beside the 2-D tiles
    q, k, v, rpb = make_inputs(7, 9, 16, grad=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = na2d_flex(q, k, v, rpb, 7, tile=tile)
    torch.testing.assert_close(out, brute_force(q, k, v, rpb, 7)[1])


def test_mask_and_bias_do_not_close_over_the_map_size():
    # One compiled kernel for every map size needs the mods to read sizes from tensors only.
    plan = _flex_plan(20, 40, 9, "cpu", FLEX_TILE)
    cells = [cell.cell_contents for cell in plan.block_mask.mask_mod.__closure__]
    assert cells and all(isinstance(c, torch.Tensor) for c in cells)


def test_block_mask_of_a_large_map_is_cheap():
    # Cityscapes' whole-image test, stride-4 map: 256 x 512, L = 9. A dense mask would be 137 GB.
    # Peak = the growth of this fresh process's resident high-water mark (VmHWM, reset before the
    # build); getrusage's maxrss would also count the pytest process it was spawned from.
    script = textwrap.dedent("""
        import re, time
        from pna.ops.na2d_flex import window_block_mask
        def resident_mb(field):
            return int(re.search(field + r":\\s+(\\d+)", open("/proc/self/status").read()).group(1)) / 1024
        window_block_mask(20, 40, 9, "cpu")  # warm up torch's lazy initialisation
        open("/proc/self/clear_refs", "w").write("5")  # reset the high-water mark to the current RSS
        before = resident_mb("VmRSS")
        start = time.perf_counter()
        mask = window_block_mask(256, 512, 9, "cpu")
        seconds = time.perf_counter() - start
        print(resident_mb("VmHWM") - before, seconds, mask.kv_num_blocks.shape[-1], int(mask.kv_num_blocks.max()))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    peak_mb, seconds, blocks, most = done.stdout.split()
    assert int(blocks) == (256 // FLEX_TILE[0]) * (512 // FLEX_TILE[1]), done.stdout
    assert int(most) <= 9, done.stdout  # a query patch touches at most 3 x 3 key patches at L = 9
    assert float(peak_mb) < 200, f"building the block mask took {float(peak_mb):.0f} MB ({float(seconds):.1f} s)"


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_flex_uses_the_block_mask_correctly_on_cpu(monkeypatch):
    # Eager flex ignores the block sparsity; a compiled kernel visits only the listed key blocks, so
    # a block missing from the mask would change the result. (Static shapes: inductor's CPU flex
    # template does not build with dynamic shapes in torch 2.14; the CUDA path compiles dynamic.)
    import pna.ops.na2d_flex as flex

    monkeypatch.setattr(flex, "flex_attention", torch.compile(flex.flex_attention, dynamic=False))
    q, k, v, rpb = (t.float() for t in make_inputs(9, 20, 36, heads=2, dim=16, dim_v=16, grad=False))
    counts = flex.window_block_mask(20, 36, 9, "cpu").kv_num_blocks
    assert int(counts.min()) < counts.shape[-1]  # sparse: some key blocks are skipped
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = flex.na2d_flex(q, k, v, rpb, 9)
    torch.testing.assert_close(out, brute_force(q, k, v, rpb, 9)[1], atol=1e-5, rtol=1e-5)
