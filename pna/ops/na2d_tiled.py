"""Halo-tiled neighbourhood attention: every product is a batched matmul (the CPU training path).

Queries are cut into ``T x T`` tiles. Every window of a tile's queries lies in the tile's key
*halo* of ``K x K = (T + L - 1)^2`` keys (:func:`pna.ops.window.tile_halo_table`), so a tile's
scores are one ``(T^2 x d) @ (d x K^2)`` matmul. The clamped window and the relative position bias
become one additive table per tile (``-inf`` outside the window); the table only depends on where
the tile sits relative to the borders, so interior tiles share one and a map has at most a few
per axis (built once per shape). Then softmax and a second matmul with the value halo. The halo
costs ``K^2 / L^2`` more multiply-adds than the window (3.2x at ``T = 8``, ``L = 9``) but runs at
matmul speed, where the slot loop of :mod:`pna.ops.na2d_cpu` issues thousands of small ops.

The backward is by hand, flash-attention style: the scores are recomputed chunk by chunk (no
``H W K^2`` tensor is kept), ``dS = P * (dP - rowsum(dO * O))``, the key and value halo
gradients are summed back into the map (one ``index_add_`` per tile row) and the bias-table
gradient goes into ``rpb`` with one ``index_add_``. Half-precision inputs are computed in float32
(CPUs without bf16 units emulate it, and 81-term sums lose too much in bf16).

Work goes by chunks (one tile row, one head, the whole batch, as many tile columns as keep the
chunk's scores in cache); the score matmul adds into a copy of the chunk's bias tables in place.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .common import compute_dtype, quiet_tracer
from .window import tile_halo_table

TILE = (8, 8)  # queries per tile (rows, cols); measured, see pna.ops.na2d (crossover table)
CHUNK_ELEMENTS = 1 << 19  # scores per chunk (2 MiB in float32): stays in the L2/L3 caches


@dataclass(frozen=True)
class TileGeometry:
    """Tiles of one (H, W, L, tile) shape: sizes, halo positions and the bias-table index."""

    tile: tuple[int, int]  # queries per tile (rows, cols)
    halo: tuple[int, int]  # halo keys per tile (rows, cols)
    tiles: tuple[int, int]  # tiles (rows, cols)
    halo_rows: tuple[int, ...]  # first halo row of every tile row
    halo_cols: tuple[int, ...]  # first halo column of every tile column
    regular: tuple[int, int]  # tile columns lo..hi whose halos start every Tc columns
    row_class: tuple[int, ...]  # bias class of every tile row
    col_class: torch.Tensor  # (tile cols,) bias class of every tile column
    bias_index: torch.Tensor  # (row classes, col classes, Tr*Tc, Kr*Kc) into rpb.flatten(1) + [-inf]


def _axis(n: int, kernel_size: int, tile: int, device: str):
    start, rel = tile_halo_table(n, kernel_size, tile, device)
    classes, inverse = torch.unique(rel, dim=0, return_inverse=True)
    return start, classes, inverse.tolist()


def _regular_run(starts: list[int], step: int) -> tuple[int, int]:
    """Longest run ``lo..hi`` of tiles whose halo starts grow by ``step`` (the unclamped ones)."""
    best, lo = (0, 1), 0
    for c in range(1, len(starts) + 1):
        if c == len(starts) or starts[c] - starts[c - 1] != step:
            best, lo = max(best, (lo, c), key=lambda run: run[1] - run[0]), c
    return best


@functools.lru_cache(maxsize=64)
def tile_geometry(height: int, width: int, kernel_size: int, tile: tuple[int, int] = TILE,
                  device: str = "cpu") -> TileGeometry:
    """Tile layout of an ``H x W`` map for window ``L`` (cached per shape).

    Example:
        >>> geo = tile_geometry(20, 12, 5, (8, 8))
        >>> geo.tile, geo.halo, geo.tiles, geo.halo_rows
        ((8, 8), (12, 12), (3, 2), (0, 6, 8))
        >>> geo.bias_index.shape  # 3 row classes (top, middle, bottom) x 2 column classes
        torch.Size([3, 2, 64, 144])
    """
    row_start, row_classes, row_class = _axis(height, kernel_size, tile[0], device)
    col_start, col_classes, col_class = _axis(width, kernel_size, tile[1], device)
    table = 2 * kernel_size - 1
    rows = row_classes[:, None, :, None, :, None]  # (Cr, 1, Tr, 1, Kr, 1)
    cols = col_classes[None, :, None, :, None, :]  # (1, Cc, 1, Tc, 1, Kc)
    index = torch.where((rows >= 0) & (cols >= 0), rows * table + cols, table * table)
    (tiles_r, halo_r), (tiles_c, halo_c) = row_classes.shape[1:], col_classes.shape[1:]
    return TileGeometry(
        tile=(tiles_r, tiles_c), halo=(halo_r, halo_c), tiles=(len(row_class), len(col_class)),
        halo_rows=tuple(row_start.tolist()),
        halo_cols=tuple(col_start.tolist()), regular=_regular_run(col_start.tolist(), tiles_c),
        row_class=tuple(row_class), col_class=torch.tensor(col_class, device=device),
        bias_index=index.reshape(*index.shape[:2], tiles_r * tiles_c, halo_r * halo_c),
    )


def _to_tiles(x: torch.Tensor, geo: TileGeometry) -> torch.Tensor:
    """``(B, h, H, W, C) -> (tile rows, h, tile cols, B, Tr * Tc, C)`` contiguous (zero padded)."""
    (tr, tc), (nr, nc) = geo.tile, geo.tiles
    batch, heads, height, width, channels = x.shape
    if (nr * tr, nc * tc) != (height, width):
        x = F.pad(x, (0, 0, 0, nc * tc - width, 0, nr * tr - height))
    x = x.view(batch, heads, nr, tr, nc, tc, channels).permute(2, 1, 4, 0, 3, 5, 6)
    return x.contiguous().view(nr, heads, nc, batch, tr * tc, channels)


def _from_tiles(x: torch.Tensor, geo: TileGeometry, height: int, width: int) -> torch.Tensor:
    (tr, tc), (nr, nc) = geo.tile, geo.tiles
    x = x.view(nr, x.shape[1], nc, x.shape[3], tr, tc, x.shape[-1]).permute(3, 1, 0, 4, 2, 5, 6)
    return x.reshape(*x.shape[:2], nr * tr, nc * tc, x.shape[-1])[:, :, :height, :width]


def _halo_views(band: torch.Tensor, halos: torch.Tensor, geo: TileGeometry, phases: int = 1):
    """Yield matching views ``(map view, halo view)``, both ``(B, h, Kr, tiles, C, Kc)``, of a row band
    ``(B, h, Kr, W, C)`` of the map and its halos ``(h, tile cols, B, Kr * Kc, C)``.

    The regular tiles (halos every ``Tc`` columns) are strided windows of the band (``unfold``),
    split into ``phases`` sets whose windows do not overlap; border tiles come one by one.
    """
    (halo_r, halo_c), step = geo.halo, geo.tile[1]
    halos = halos.view(*halos.shape[:3], halo_r, halo_c, halos.shape[-1]).permute(2, 0, 3, 1, 5, 4)
    lo, hi = geo.regular
    for phase in range(min(phases, hi - lo)):
        first, count = lo + phase, len(range(lo + phase, hi, phases))
        start = geo.halo_cols[first]
        windows = band[:, :, :, start:start + (count - 1) * step * phases + halo_c]
        yield windows.unfold(3, halo_c, step * phases), halos[:, :, :, first:hi:phases]
    for c in (*range(lo), *range(hi, geo.tiles[1])):
        start = geo.halo_cols[c]
        yield band[:, :, :, start:start + halo_c].unsqueeze(3).transpose(4, 5), halos[:, :, :, c:c + 1]


def _band_halos(x: torch.Tensor, geo: TileGeometry, r: int) -> torch.Tensor:
    """Halos of tile row ``r``: ``(B, h, H, W, C) -> (h, tile cols, B, Kr * Kc, C)`` contiguous."""
    batch, heads, _, _, channels = x.shape
    (halo_r, halo_c), row = geo.halo, geo.halo_rows[r]
    halos = x.new_empty(heads, geo.tiles[1], batch, halo_r * halo_c, channels)
    for window, halo in _halo_views(x[:, :, row:row + halo_r], halos, geo):
        halo.copy_(window)
    return halos


def _add_band_halos(out: torch.Tensor, grad: torch.Tensor, geo: TileGeometry, r: int) -> None:
    """Adjoint of :func:`_band_halos`: add halo gradients ``(h, tile cols, B, Kr * Kc, C)`` into
    ``out`` ``(B, h, H, W, C)``; overlapping halos go in separate passes (phases)."""
    phases = -(-geo.halo[1] // geo.tile[1])
    row = geo.halo_rows[r]
    for window, halo in _halo_views(out[:, :, row:row + geo.halo[0]], grad, geo, phases):
        window.add_(halo)


def _chunks(geo: TileGeometry, batch: int) -> list[tuple[int, int]]:
    """Tile-column ranges ``(c0, c1)`` of one tile row with about CHUNK_ELEMENTS scores each."""
    per_col = batch * geo.tile[0] * geo.tile[1] * geo.halo[0] * geo.halo[1]
    step = max(1, CHUNK_ELEMENTS // per_col)
    return [(c, min(c + step, geo.tiles[1])) for c in range(0, geo.tiles[1], step)]


def _bias_table(rpb: torch.Tensor, geo: TileGeometry, work: torch.dtype) -> torch.Tensor:
    """``(heads, row classes, col classes, Tr*Tc, Kr*Kc)``: bias inside the window, -inf outside."""
    outside = rpb.new_full((rpb.shape[0], 1), float("-inf"), dtype=work)
    return torch.cat([rpb.to(work).flatten(1), outside], 1)[:, geo.bias_index]


def _probs(q_tiles, keys, bias, classes, h, c0, c1):
    """Softmaxed scores of one chunk ``(tiles * B, Tr*Tc, Kr*Kc)``; ``bias`` holds the tables of
    the tile row's column classes, ``classes`` the class of every (tile, batch) pair."""
    scores = bias.index_select(0, classes)  # the score matmul adds into the bias in place
    return scores.baddbmm_(q_tiles[h, c0:c1].flatten(0, 1), keys[h, c0:c1].flatten(0, 1).transpose(1, 2)).softmax(-1)


class HaloTiledNA(torch.autograd.Function):
    """Neighbourhood attention ``(B, h, H, W, dim_v)`` on halo tiles, gradients for q, k, v, rpb."""

    @staticmethod
    def forward(ctx, q, k, v, rpb, kernel_size: int):
        work = compute_dtype(q.dtype)
        with torch.autocast(q.device.type, enabled=False), quiet_tracer():
            geo = tile_geometry(q.shape[2], q.shape[3], kernel_size, TILE, str(q.device))
            q_tiles, k_work, v_work = _to_tiles(q.to(work), geo), k.to(work), v.to(work)
            bias = _bias_table(rpb, geo, work)
            out = q_tiles.new_empty(*q_tiles.shape[:-1], v.shape[-1])
            classes, chunks = geo.col_class.repeat_interleave(q.shape[0]), _chunks(geo, q.shape[0])
            for r in range(geo.tiles[0]):
                keys, values = _band_halos(k_work, geo, r), _band_halos(v_work, geo, r)
                for h in range(q.shape[1]):
                    for c0, c1 in chunks:
                        probs = _probs(q_tiles[r], keys, bias[h, geo.row_class[r]], classes[c0 * q.shape[0]:c1 * q.shape[0]], h, c0, c1)
                        torch.bmm(probs, values[h, c0:c1].flatten(0, 1), out=out[r, h, c0:c1].flatten(0, 1))
        ctx.save_for_backward(q, k, v, rpb, out)
        ctx.kernel_size = kernel_size
        return _from_tiles(out, geo, q.shape[2], q.shape[3]).to(v.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        q, k, v, rpb, out = ctx.saved_tensors
        need_q, need_k, need_v, need_bias = ctx.needs_input_grad[:4]
        batch, heads, height, width = q.shape[:4]
        with torch.autocast(q.device.type, enabled=False):
            geo = tile_geometry(height, width, ctx.kernel_size, TILE, str(q.device))
            work = out.dtype
            q_tiles, k_work, v_work = _to_tiles(q.to(work), geo), k.to(work), v.to(work)
            bias = _bias_table(rpb, geo, work)
            grad = _to_tiles(grad_out.to(work), geo)
            minus_delta = -(grad * out).sum(-1, keepdim=True)  # -rowsum(dO * O) = -rowsum(P * dP)
            grad_q = torch.empty_like(q_tiles) if need_q else None  # every tile is written
            grad_k = torch.zeros_like(k_work) if need_k else None
            grad_v = torch.zeros_like(v_work) if need_v else None
            grad_bias = torch.zeros_like(bias) if need_bias else None
            classes, chunks = geo.col_class.repeat_interleave(batch), _chunks(geo, batch)
            # (classes, tiles * B) one-hot: the bias gradient of a chunk is one matmul, not a scatter
            one_hot = F.one_hot(classes, int(geo.col_class.max()) + 1).to(work).t().contiguous()
            for r in range(geo.tiles[0]):
                keys, values = _band_halos(k_work, geo, r), _band_halos(v_work, geo, r)
                grad_keys, grad_values = torch.empty_like(keys), torch.empty_like(values)  # each halo written once
                row_class = geo.row_class[r]
                for h in range(heads):
                    for c0, c1 in chunks:
                        chunk_classes = classes[c0 * batch:c1 * batch]
                        probs = _probs(q_tiles[r], keys, bias[h, row_class], chunk_classes, h, c0, c1)
                        grad_o = grad[r, h, c0:c1].flatten(0, 1)
                        if need_v:
                            torch.bmm(probs.transpose(1, 2), grad_o, out=grad_values[h, c0:c1].flatten(0, 1))
                        grad_s = torch.baddbmm(minus_delta[r, h, c0:c1].flatten(0, 1), grad_o,
                                               values[h, c0:c1].flatten(0, 1).transpose(1, 2)).mul_(probs)
                        if need_q:
                            torch.bmm(grad_s, keys[h, c0:c1].flatten(0, 1), out=grad_q[r, h, c0:c1].flatten(0, 1))
                        if need_k:
                            torch.bmm(grad_s.transpose(1, 2), q_tiles[r, h, c0:c1].flatten(0, 1),
                                      out=grad_keys[h, c0:c1].flatten(0, 1))
                        if need_bias:
                            grad_bias[h, row_class].flatten(1).addmm_(one_hot[:, c0 * batch:c1 * batch], grad_s.flatten(1))
                if need_k:
                    _add_band_halos(grad_k, grad_keys, geo, r)
                if need_v:
                    _add_band_halos(grad_v, grad_values, geo, r)
            if need_q:
                grad_q = _from_tiles(grad_q, geo, height, width).to(q.dtype)
            if need_k:
                grad_k = grad_k.to(k.dtype)
            if need_v:
                grad_v = grad_v.to(v.dtype)
            if need_bias:
                flat = grad_bias.new_zeros(rpb.shape[0], rpb[0].numel() + 1)
                flat.index_add_(1, geo.bias_index.flatten(), grad_bias.flatten(1))
                grad_bias = flat[:, :-1].view(rpb.shape).to(rpb.dtype)
        return grad_q, grad_k, grad_v, grad_bias, None


def na2d_tiled(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rpb: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Neighbourhood attention output ``(B, heads, H, W, dim_v)`` on halo tiles (no checks, no scaling).

    ``rpb`` may be float32 with half-precision q/k/v (autocast): it is cast inside, its gradient
    stays in its own dtype.

    Example:
        >>> from pna.ops.na2d_reference import na2d_reference
        >>> q, k, v = torch.randn(3, 1, 2, 11, 13, 4, dtype=torch.float64).unbind(0)
        >>> rpb = torch.randn(2, 9, 9, dtype=torch.float64)
        >>> na2d_tiled(q, k, v, rpb, 5).allclose(na2d_reference(q, k, v, rpb, 5))
        True
    """
    return HaloTiledNA.apply(q, k, v, rpb, kernel_size)
