"""Neighbourhood attention through ``torch.nn.attention.flex_attention`` (fused on CUDA).

Tokens are permuted into 2-D tiles before flex_attention (and back after): one tile of
``FLEX_TILE = 8 x 16`` pixels is one flex block of 128 tokens, so a query block is a patch and its
windows touch a 3 x 3 patch of key blocks at any map width (row-major order touches 9 rows x 2-3
blocks per row once the map is wider than a block). The clamped window is a ``mask_mod`` and the
relative position bias a ``score_mod``; both look up per-token tables (pixel row/col, window
start/end) instead of closing over the map size, so one compiled kernel serves every size.

The block mask is built per axis in O(blocks) (:func:`window_block_mask`): a query tile's windows
cover a range of key tiles along each axis, a key tile is *full* (no mask_mod needed) where it lies
inside every window of the query tile. Only the (query blocks x key blocks) index table that
``BlockMask`` itself stores is allocated, never an ``(H W)^2`` mask (256 x 512 with L = 9: 1024
blocks, ~4 MB). Cached per (H, W, L, device).

Shapes: compiled with ``dynamic=True`` (no recompile per evaluation size: VOC's short-side-512
resize gives a new width for most images, times four stages, which static shapes or size buckets
would turn into more compiled variants than torch's recompile limit). flex scales scores by
``1/sqrt(d)`` by default; na2d does not scale, so ``scale=1``. Without compilation (CPU) flex runs
an unfused reference that materialises all ``(H W)^2`` scores and ignores the block mask's
sparsity: fine for tiny test shapes only; it has no CPU backward.
"""
from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.nn.attention.flex_attention import BlockMask, flex_attention

from .window import window_starts

FLEX_TILE = (8, 16)  # pixels per tile = tokens per flex block (128, flex's default block size)
_FAR = 1 << 20  # row/col of padding keys: outside every window


def _axis_tiles(n: int, kernel_size: int, tile: int, device: torch.device):
    """Per axis: token coordinate tables and, per query tile, the key-tile ranges its windows touch."""
    tiles = -(-n // tile)
    pos = torch.arange(tiles * tile, device=device)
    query = pos.clamp(max=n - 1)  # padding queries copy the last real one (no empty softmax row)
    span = min(kernel_size, n)
    start = window_starts(n, kernel_size, device)[query]
    key = torch.where(pos < n, pos, _FAR)
    first, last = start.view(tiles, tile)[:, 0], start.view(tiles, tile)[:, -1]  # window starts grow with the query
    touched = (first // tile, (last + span - 1) // tile)  # key tiles holding any window key
    # full: the key tile is real and inside the intersection [last, first + span) of the windows
    full_lo = (last + tile - 1) // tile
    full_hi = torch.minimum(first + span, torch.tensor(n, device=device)) // tile - 1
    return (query, start, start + span, key), touched, (full_lo, full_hi), tiles


def _blocks_2d(touched, full, tiles_c: int):
    """Candidate key blocks of every query tile: ids ``(q blocks, candidates)``, touched and full flags.

    Along each axis a query tile touches key tiles ``lo..hi`` and is full on ``full_lo..full_hi``;
    in 2-D a block is touched (full) where both axes are.
    """
    def axis(lo_hi, full_lo_hi):
        (lo, hi), (full_lo, full_hi) = lo_hi, full_lo_hi
        u = lo[:, None] + torch.arange(int((hi - lo).max()) + 1, device=lo.device)  # (tiles, candidates)
        return u, u <= hi[:, None], (u >= full_lo[:, None]) & (u <= full_hi[:, None])

    (u, u_in, u_full), (w, w_in, w_full) = axis(touched[0], full[0]), axis(touched[1], full[1])
    both = lambda a, b: (a[:, None, :, None] & b[None, :, None, :]).flatten(2).flatten(0, 1)  # noqa: E731
    ids = (u[:, None, :, None] * tiles_c + w[None, :, None, :]).flatten(2).flatten(0, 1)
    is_touched, is_full = both(u_in, w_in), both(u_full, w_full)
    return ids, is_touched & ~is_full, is_touched & is_full


def _kv_table(ids: torch.Tensor, valid: torch.Tensor, num_kv: int):
    """(count, indices) in BlockMask's layout: valid block ids first, row width = all key blocks."""
    count = valid.sum(1, dtype=torch.int32)
    order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)
    packed = torch.where(valid, ids, 0).gather(1, order).to(torch.int32)[:, :num_kv]
    indices = torch.zeros(ids.shape[0], num_kv, dtype=torch.int32, device=ids.device)
    indices[:, :packed.shape[1]] = packed
    return count[None, None], indices[None, None]


class _FlexPlan(NamedTuple):
    block_mask: BlockMask
    rows: torch.Tensor  # pixel row/col of every query token (padding: the last real pixel)
    cols: torch.Tensor
    key_rows: torch.Tensor  # pixel row/col of every key token (padding: far outside every window)
    key_cols: torch.Tensor


@functools.lru_cache(maxsize=32)
def _flex_plan(height: int, width: int, kernel_size: int, device: str, tile: tuple[int, int]) -> _FlexPlan:
    dev = torch.device(device)
    (q_row, row_start, row_end, k_row), touched_r, full_r, tiles_r = _axis_tiles(height, kernel_size, tile[0], dev)
    (q_col, col_start, col_end, k_col), touched_c, full_c, tiles_c = _axis_tiles(width, kernel_size, tile[1], dev)
    num_blocks, block = tiles_r * tiles_c, tile[0] * tile[1]
    ids, partial, full = _blocks_2d((touched_r, touched_c), (full_r, full_c), tiles_c)

    def per_token(rows: torch.Tensor, cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Axis tables -> tables over the permuted sequence (tile-major, row-major inside a tile)."""
        shape = (tiles_r, tiles_c, tile[0], tile[1])
        grid_r = rows.view(tiles_r, tile[0])[:, None, :, None].expand(shape)
        grid_c = cols.view(tiles_c, tile[1])[None, :, None, :].expand(shape)
        return grid_r.flatten(), grid_c.flatten()

    q_rs, q_cs = per_token(row_start, col_start)
    q_re, q_ce = per_token(row_end, col_end)
    k_r, k_c = per_token(k_row, k_col)

    def mask_mod(b, h, q_idx, kv_idx):
        row, col = k_r[kv_idx], k_c[kv_idx]
        return (row >= q_rs[q_idx]) & (row < q_re[q_idx]) & (col >= q_cs[q_idx]) & (col < q_ce[q_idx])

    count, indices = _kv_table(ids, partial, num_blocks)
    full_count, full_indices = _kv_table(ids, full, num_blocks)
    seq = num_blocks * block
    mask = BlockMask.from_kv_blocks(count, indices, full_count, full_indices, BLOCK_SIZE=(block, block),
                                    mask_mod=mask_mod, seq_lengths=(seq, seq))
    return _FlexPlan(mask, *per_token(q_row, q_col), k_r, k_c)


def window_block_mask(height: int, width: int, kernel_size: int, device: str, tile: tuple[int, int] = FLEX_TILE) -> BlockMask:
    """Block mask of the clamped window on the tile-permuted sequence (cached per shape and device).

    Example:
        >>> mask = window_block_mask(20, 40, 9, "cpu")  # 3 x 3 tiles of 8 x 16 pixels
        >>> mask.shape[-2:], mask.BLOCK_SIZE
        ((1152, 1152), (128, 128))
    """
    return _flex_plan(height, width, kernel_size, device, tile).block_mask


def to_tile_order(x: torch.Tensor, tile: tuple[int, int] = FLEX_TILE) -> torch.Tensor:
    """``(B, h, H, W, C) -> (B, h, N, C)``: pad to whole tiles, tile-major then row-major tokens.

    Example:
        >>> x = torch.arange(12.).view(1, 1, 3, 4, 1)
        >>> from_tile_order(to_tile_order(x, (2, 2)), 3, 4, (2, 2)).equal(x)
        True
    """
    batch, heads, height, width, channels = x.shape
    tiles_r, tiles_c = -(-height // tile[0]), -(-width // tile[1])
    x = F.pad(x, (0, 0, 0, tiles_c * tile[1] - width, 0, tiles_r * tile[0] - height))
    x = x.view(batch, heads, tiles_r, tile[0], tiles_c, tile[1], channels).transpose(3, 4)
    return x.reshape(batch, heads, -1, channels)


def from_tile_order(x: torch.Tensor, height: int, width: int, tile: tuple[int, int] = FLEX_TILE) -> torch.Tensor:
    """Inverse of :func:`to_tile_order`: ``(B, h, N, C) -> (B, h, H, W, C)``."""
    tiles_r, tiles_c = -(-height // tile[0]), -(-width // tile[1])
    x = x.view(*x.shape[:2], tiles_r, tiles_c, tile[0], tile[1], x.shape[-1]).transpose(3, 4)
    return x.reshape(*x.shape[:2], tiles_r * tile[0], tiles_c * tile[1], x.shape[-1])[:, :, :height, :width]


@functools.lru_cache(maxsize=1)
def _compiled_flex():
    return torch.compile(flex_attention, dynamic=True)


def na2d_flex(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rpb: torch.Tensor, kernel_size: int,
              tile: tuple[int, int] = FLEX_TILE) -> torch.Tensor:
    """Neighbourhood attention output ``(B, heads, H, W, dim_v)`` via flex_attention (no checks).

    ``tile``: pixels per flex block (rows, cols); ``(1, 128)`` on a map 128 or 256 wide is plain
    row-major order (benchmarks/na_cuda.py compares the two). Compiled on CUDA, eager elsewhere. Example:
        >>> q = k = v = torch.randn(1, 2, 4, 4, 8)
        >>> na2d_flex(q, k, v, torch.zeros(2, 5, 5), 3).shape
        torch.Size([1, 2, 4, 4, 8])
    """
    height, width = q.shape[2:4]
    block_mask, rows, cols, key_rows, key_cols = _flex_plan(height, width, kernel_size, str(q.device), tile)
    last, bias = kernel_size - 1, rpb.to(q.dtype)

    def score_mod(score, b, h, q_idx, kv_idx):
        # Masked-out pairs (padding keys included) are scored too, then dropped: keep the index in range.
        row_offset = (key_rows[kv_idx] - rows[q_idx] + last).clamp(0, 2 * last)
        col_offset = (key_cols[kv_idx] - cols[q_idx] + last).clamp(0, 2 * last)
        return score + bias[h, row_offset, col_offset].to(score.dtype)

    attend = _compiled_flex() if q.is_cuda else flex_attention
    out = attend(to_tile_order(q, tile), to_tile_order(k, tile), to_tile_order(v, tile), score_mod=score_mod,
                 block_mask=block_mask, scale=1.0)
    return from_tile_order(out, height, width, tile)
