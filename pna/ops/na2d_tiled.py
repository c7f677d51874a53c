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
gradients are summed back into the map (one ``index_add_`` per tensor) and the bias-table
gradient goes into ``rpb`` with one ``index_add_``. Half-precision inputs are computed in float32
(CPUs without bf16 units emulate it, and 81-term sums lose too much in bf16).

Work goes by chunks of one tile row and a few tile columns (all batch x heads at once), sized so
the scores of a chunk stay in cache.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from .window import tile_halo_table

TILE = 8  # queries per tile side; measured, see pna.ops.na2d (crossover table)
CHUNK_ELEMENTS = 1 << 19  # scores per chunk (2 MiB in float32): stays in the L2/L3 caches


@dataclass(frozen=True)
class TileGeometry:
    """Tiles of one (H, W, L, T) shape: sizes, halo positions and the bias-table index."""

    tile: tuple[int, int]  # queries per tile (rows, cols)
    halo: tuple[int, int]  # halo keys per tile (rows, cols)
    tiles: tuple[int, int]  # tiles (rows, cols)
    halo_rows: tuple[int, ...]  # first halo row of every tile row
    halo_cols: torch.Tensor  # (tile cols * halo cols,) key column of every halo column
    row_class: tuple[int, ...]  # bias class of every tile row
    col_runs: tuple[tuple[int, int, int], ...]  # (first tile col, end, class): runs of one class
    bias_index: torch.Tensor  # (row classes, col classes, T*T, K*K) into rpb.flatten(1) + [-inf]


def _axis(n: int, kernel_size: int, tile: int, device: str):
    start, rel = tile_halo_table(n, kernel_size, tile, device)
    classes, inverse = torch.unique(rel, dim=0, return_inverse=True)
    return start, classes, inverse.tolist()


@functools.lru_cache(maxsize=64)
def tile_geometry(height: int, width: int, kernel_size: int, tile: int = TILE, device: str = "cpu") -> TileGeometry:
    """Tile layout of an ``H x W`` map for window ``L`` (cached per shape).

    Example:
        >>> geo = tile_geometry(20, 12, 5, 8)
        >>> geo.tile, geo.halo, geo.tiles, geo.halo_rows
        ((8, 8), (12, 12), (3, 2), (0, 6, 8))
        >>> geo.bias_index.shape  # 3 row classes (top, middle, bottom) x 2 column classes
        torch.Size([3, 2, 64, 144])
    """
    row_start, row_classes, row_class = _axis(height, kernel_size, tile, device)
    col_start, col_classes, col_class = _axis(width, kernel_size, tile, device)
    table = 2 * kernel_size - 1
    rows = row_classes[:, None, :, None, :, None]  # (Cr, 1, Tr, 1, Kr, 1)
    cols = col_classes[None, :, None, :, None, :]  # (1, Cc, 1, Tc, 1, Kc)
    index = torch.where((rows >= 0) & (cols >= 0), rows * table + cols, table * table)
    tiles_r, tiles_c = row_classes.shape[1], col_classes.shape[1]
    halo_r, halo_c = row_classes.shape[2], col_classes.shape[2]
    runs, first = [], 0
    for c in range(1, len(col_class) + 1):
        if c == len(col_class) or col_class[c] != col_class[first]:
            runs.append((first, c, col_class[first]))
            first = c
    halo_cols = (col_start[:, None] + torch.arange(halo_c, device=device)).flatten()
    return TileGeometry(
        tile=(tiles_r, tiles_c), halo=(halo_r, halo_c), tiles=(len(row_class), len(col_class)),
        halo_rows=tuple(row_start.tolist()), halo_cols=halo_cols, row_class=tuple(row_class),
        col_runs=tuple(runs), bias_index=index.reshape(*index.shape[:2], tiles_r * tiles_c, halo_r * halo_c),
    )


def _to_tiles(x: torch.Tensor, geo: TileGeometry) -> torch.Tensor:
    """``(G, H, W, C) -> (tile rows, tile cols, G, Tr * Tc, C)`` contiguous (zero padded)."""
    (tr, tc), (nr, nc) = geo.tile, geo.tiles
    groups, height, width, channels = x.shape
    x = F.pad(x, (0, 0, 0, nc * tc - width, 0, nr * tr - height))
    x = x.view(groups, nr, tr, nc, tc, channels).permute(1, 3, 0, 2, 4, 5)
    return x.contiguous().view(nr, nc, groups, tr * tc, channels)


def _from_tiles(x: torch.Tensor, geo: TileGeometry, height: int, width: int) -> torch.Tensor:
    (tr, tc), (nr, nc) = geo.tile, geo.tiles
    x = x.view(nr, nc, -1, tr, tc, x.shape[-1]).permute(2, 0, 3, 1, 4, 5)
    return x.reshape(x.shape[0], nr * tr, nc * tc, x.shape[-1])[:, :height, :width]


def _column_halos(x: torch.Tensor, geo: TileGeometry) -> torch.Tensor:
    """``(G, H, W, C) -> (tile cols, G, H, Kc, C)``: every tile column's halo columns, contiguous."""
    groups, height, _, channels = x.shape
    x = x.index_select(2, geo.halo_cols).view(groups, height, geo.tiles[1], geo.halo[1], channels)
    return x.permute(2, 0, 1, 3, 4).contiguous()


def _column_halos_adjoint(grad: torch.Tensor, geo: TileGeometry, width: int) -> torch.Tensor:
    """Sum halo-column gradients ``(tile cols, G, H, Kc, C)`` back into ``(G, H, W, C)``."""
    _, groups, height, _, channels = grad.shape
    grad = grad.permute(1, 2, 0, 3, 4).reshape(groups, height, -1, channels)
    return grad.new_zeros(groups, height, width, channels).index_add_(2, geo.halo_cols, grad)


def _chunks(geo: TileGeometry, groups: int):
    """Yield ``(tile row, first tile col, end tile col)`` with about CHUNK_ELEMENTS scores each."""
    per_col = groups * geo.tile[0] * geo.tile[1] * geo.halo[0] * geo.halo[1]
    step = max(1, CHUNK_ELEMENTS // per_col)
    for r in range(geo.tiles[0]):
        for c in range(0, geo.tiles[1], step):
            yield r, c, min(c + step, geo.tiles[1])


def _halo(halos: torch.Tensor, geo: TileGeometry, r: int, c0: int, c1: int) -> torch.Tensor:
    """The key/value halos of tiles ``(r, c0:c1)`` as a ``(tiles * G, Kr * Kc, C)`` view."""
    row, groups, channels = geo.halo_rows[r], halos.shape[1], halos.shape[-1]
    # view, not reshape: the backward accumulates into these halos in place
    return halos[c0:c1, :, row:row + geo.halo[0]].view((c1 - c0) * groups, geo.halo[0] * geo.halo[1], channels)


class _Tiled:
    """Inputs of one call in the tiled layout, shared by forward and backward."""

    def __init__(self, q, k, v, rpb, kernel_size, work):
        self.batch, self.heads, self.height, self.width = q.shape[:4]
        self.geo = tile_geometry(self.height, self.width, kernel_size, TILE, str(q.device))
        flat = lambda x: x.to(work).flatten(0, 1)  # noqa: E731  (B, h, H, W, C) -> (B*h, H, W, C)
        self.q = _to_tiles(flat(q), self.geo)
        self.k, self.v = _column_halos(flat(k), self.geo), _column_halos(flat(v), self.geo)
        table = torch.cat([rpb.to(work).flatten(1), rpb.new_full((rpb.shape[0], 1), float("-inf"), dtype=work)], 1)
        self.bias = table[:, self.geo.bias_index]  # (heads, Cr, Cc, T*T, K*K)

    def probs(self, r: int, c0: int, c1: int) -> torch.Tensor:
        """Softmaxed scores of tiles ``(r, c0:c1)``: ``(tiles * B * heads, T*T, K*K)``."""
        q = self.q[r, c0:c1].flatten(0, 1)
        scores = torch.bmm(q, _halo(self.k, self.geo, r, c0, c1).transpose(1, 2))
        per_head = scores.view(c1 - c0, self.batch, self.heads, *scores.shape[1:])
        for lo, hi, cls in self.geo.col_runs:
            lo, hi = max(lo, c0), min(hi, c1)
            if lo < hi:
                per_head[lo - c0:hi - c0] += self.bias[:, self.geo.row_class[r], cls]
        return scores.softmax(-1)


class HaloTiledNA(torch.autograd.Function):
    """Neighbourhood attention ``(B, h, H, W, dim_v)`` on halo tiles, gradients for q, k, v, rpb."""

    @staticmethod
    def forward(ctx, q, k, v, rpb, kernel_size: int):
        work = torch.float32 if q.dtype in (torch.float16, torch.bfloat16) else q.dtype
        with torch.autocast(q.device.type, enabled=False):
            t = _Tiled(q, k, v, rpb, kernel_size, work)
            out = t.q.new_empty(*t.q.shape[:-1], v.shape[-1])
            for r, c0, c1 in _chunks(t.geo, t.q.shape[2]):
                torch.bmm(t.probs(r, c0, c1), _halo(t.v, t.geo, r, c0, c1), out=out[r, c0:c1].view(-1, *out.shape[-2:]))
        ctx.save_for_backward(q, k, v, rpb, out)
        ctx.kernel_size = kernel_size
        return _from_tiles(out, t.geo, t.height, t.width).reshape(v.shape).to(v.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        q, k, v, rpb, out = ctx.saved_tensors
        need_q, need_k, need_v, need_bias = ctx.needs_input_grad[:4]
        with torch.autocast(q.device.type, enabled=False):
            t = _Tiled(q, k, v, rpb, ctx.kernel_size, out.dtype)
            geo = t.geo
            grad = _to_tiles(grad_out.to(out.dtype).flatten(0, 1), geo)
            delta = (grad * out).sum(-1, keepdim=True)  # rowsum(dO * O) = rowsum(P * dP)
            grad_q = torch.zeros_like(t.q) if need_q else None
            grad_k = torch.zeros_like(t.k) if need_k else None
            grad_v = torch.zeros_like(t.v) if need_v else None
            grad_bias = torch.zeros_like(t.bias) if need_bias else None
            for r, c0, c1 in _chunks(geo, t.q.shape[2]):
                probs = t.probs(r, c0, c1)
                grad_o = grad[r, c0:c1].flatten(0, 1)
                if need_v:
                    _halo(grad_v, geo, r, c0, c1).baddbmm_(probs.transpose(1, 2), grad_o)
                grad_s = torch.bmm(grad_o, _halo(t.v, geo, r, c0, c1).transpose(1, 2))
                grad_s.sub_(delta[r, c0:c1].flatten(0, 1)).mul_(probs)  # dS = P * (dP - rowsum)
                if need_q:
                    torch.bmm(grad_s, _halo(t.k, geo, r, c0, c1), out=grad_q[r, c0:c1].view(-1, *grad_q.shape[-2:]))
                if need_k:
                    _halo(grad_k, geo, r, c0, c1).baddbmm_(grad_s.transpose(1, 2), t.q[r, c0:c1].flatten(0, 1))
                if need_bias:
                    per_head = grad_s.view(c1 - c0, t.batch, t.heads, *grad_s.shape[1:])
                    for lo, hi, cls in geo.col_runs:
                        lo, hi = max(lo, c0), min(hi, c1)
                        if lo < hi:
                            grad_bias[:, geo.row_class[r], cls] += per_head[lo - c0:hi - c0].sum((0, 1))
            if need_q:
                grad_q = _from_tiles(grad_q, geo, t.height, t.width).reshape(q.shape).to(q.dtype)
            if need_k:
                grad_k = _column_halos_adjoint(grad_k, geo, t.width).view(k.shape).to(k.dtype)
            if need_v:
                grad_v = _column_halos_adjoint(grad_v, geo, t.width).view(v.shape).to(v.dtype)
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
