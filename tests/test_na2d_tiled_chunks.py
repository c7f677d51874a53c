"""The halo-tiled neighbourhood attention on maps that split into several chunks, against a float64
re-derivation written here from the definition.

``pna.ops.na2d_tiled`` walks the map one tile row at a time and cuts every tile row into chunks of
tile columns (``_chunks``: about ``CHUNK_ELEMENTS`` scores each). With the shipped constants (8 x 8
query tiles, 2^19 scores a chunk) a chunk at L = 9 holds 2^19 / (B * 64 * 16^2) tile columns, so the
maps of tests/test_na2d.py never split. Here the maps have several tile rows (the last one shorter,
padded) and several column chunks (the last one holding fewer tile columns, its last tile padded):
once with the shipped constants and a batch large enough to split, and with smaller chunks and
tiles (square and not) set for the test.

The expected values do not come from pna.ops (whose paths share :mod:`pna.ops.window`): the window
start is NATTEN's ``get_window_start`` (docs/architecture.md, "Neighbourhood attention"), the bias
index ``key - query + L - 1`` (same table), both written below.
"""
import pytest
import torch

from pna.ops import na2d_tiled as tiled
from na_reference import natten_start  # the window rule, written once for the tests


def naive_na(q, k, v, rpb, kernel_size):
    """softmax(q . k_window + bias) @ v_window for every query, by explicit window index lists."""
    height, width = q.shape[2:4]
    span_h, span_w = min(kernel_size, height), min(kernel_size, width)
    rows = torch.tensor([[natten_start(i, height, kernel_size) + t for t in range(span_h)] for i in range(height)])
    cols = torch.tensor([[natten_start(j, width, kernel_size) + t for t in range(span_w)] for j in range(width)])
    rel_rows = rows - torch.arange(height)[:, None] + kernel_size - 1  # (H, span_h)
    rel_cols = cols - torch.arange(width)[:, None] + kernel_size - 1  # (W, span_w)
    r_idx, c_idx = rows[:, None, :, None], cols[None, :, None, :]  # -> (H, W, span_h, span_w)
    keys, values = k[:, :, r_idx, c_idx], v[:, :, r_idx, c_idx]  # (B, h, H, W, span_h, span_w, C)
    bias = rpb[:, rel_rows[:, None, :, None], rel_cols[None, :, None, :]]  # (h, H, W, span_h, span_w)
    logits = torch.einsum("bhijc,bhijxyc->bhijxy", q, keys) + bias
    weights = logits.flatten(-2).softmax(-1).view_as(logits)
    return torch.einsum("bhijxy,bhijxyc->bhijc", weights, values)


# (L, B, H, W, tile or None for the shipped one, scores per chunk or None for the shipped 2^19,
#  expected tile grid, expected column chunks of one tile row: worked out by hand)
CASES = {
    # shipped constants: halo 16 x 16 at L = 9, 8 * 64 * 256 = 2^17 scores per tile column -> 4 columns
    # per chunk; 20 rows = 8 + 8 + 4, 70 columns = 8 * 8 + 6
    "shipped-L9": (9, 8, 20, 70, None, None, (3, 9), [(0, 4), (4, 8), (8, 9)]),
    # tall map: halo 12 x 12 at L = 5, 2 * 64 * 144 = 18432 scores per column, 3 columns per chunk
    "tall-L5": (5, 2, 37, 27, None, 3 * 18432, (5, 4), [(0, 3), (3, 4)]),
    # non-square 4 x 3 tiles: halo 10 x 9 at L = 7, 1 * 12 * 90 = 1080 scores per column, 2 per chunk;
    # 18 rows = 4 * 4 + 2, 26 columns = 8 * 3 + 2
    "tile4x3-L7": (7, 1, 18, 26, (4, 3), 2 * 1080, (5, 9), [(0, 2), (2, 4), (4, 6), (6, 8), (8, 9)]),
    # one tile column per chunk, and a map with fewer rows (6) than L = 9: one 6-row tile row
    "short-L9": (9, 2, 6, 30, None, 1, (1, 4), [(0, 1), (1, 2), (2, 3), (3, 4)]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_tiled_forward_and_backward_on_several_chunks_match_the_definition(case, monkeypatch):
    kernel_size, batch, height, width, tile, chunk_elements, grid, chunks = CASES[case]
    if tile is not None:
        monkeypatch.setattr(tiled, "TILE", tile)
    if chunk_elements is not None:
        monkeypatch.setattr(tiled, "CHUNK_ELEMENTS", chunk_elements)
    geo = tiled.tile_geometry(height, width, kernel_size, tiled.TILE)
    assert geo.tiles == grid and tiled._chunks(geo, batch) == chunks  # the map really splits as intended

    g = torch.Generator().manual_seed(sum(map(ord, case)))
    heads, dim, dim_v = (1 if case == "shipped-L9" else 2), 3, 2  # one head keeps the 8-image case fast
    q = torch.randn(batch, heads, height, width, dim, dtype=torch.float64, generator=g)
    k = torch.randn(batch, heads, height, width, dim, dtype=torch.float64, generator=g)
    v = torch.randn(batch, heads, height, width, dim_v, dtype=torch.float64, generator=g)
    rpb = torch.randn(heads, 2 * kernel_size - 1, 2 * kernel_size - 1, dtype=torch.float64, generator=g)
    inputs = [t.requires_grad_() for t in (q, k, v, rpb)]
    seed = torch.randn(batch, heads, height, width, dim_v, dtype=torch.float64, generator=g)

    expected = naive_na(*inputs, kernel_size)
    expected_grads = torch.autograd.grad(expected, inputs, seed)
    out = tiled.na2d_tiled(*inputs, kernel_size)
    torch.testing.assert_close(out, expected, msg=lambda m: f"{case} forward: {m}")
    grads = torch.autograd.grad(out, inputs, seed)
    for name, got, want in zip(("q", "k", "v", "rpb"), grads, expected_grads):
        torch.testing.assert_close(got, want, msg=lambda m: f"{case} grad of {name}: {m}")
