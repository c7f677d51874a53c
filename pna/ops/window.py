"""Geometry of the clamped (NATTEN-style) neighbourhood window, shared by every na2d path.

Along an axis of length ``n`` with window ``L`` (odd) and ``r = L // 2``, query ``i`` attends to
``Le = min(L, n)`` consecutive keys starting at ``clamp(i - r, 0, n - Le)``. For ``n >= L`` this is
exactly NATTEN's ``max(i - r, 0) + (n - 1 - r - i if i + r >= n else 0)``: near a border the window
slides inward instead of being zero padded. For ``n < L`` the window is the whole axis.
"""
from __future__ import annotations

import torch


def window_starts(n: int, kernel_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """First key index of every query's window along one axis, shape ``(n,)``.

    Example:
        >>> window_starts(5, 3).tolist()
        [0, 0, 1, 2, 2]
    """
    span = min(kernel_size, n)
    i = torch.arange(n, device=device)
    return (i - kernel_size // 2).clamp(0, n - span)


def neighbour_index(n: int, kernel_size: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Key index of window slot ``t`` for query ``i`` along one axis, shape ``(n, min(L, n))``.

    Example:
        >>> neighbour_index(4, 3).tolist()
        [[0, 1, 2], [0, 1, 2], [1, 2, 3], [1, 2, 3]]
    """
    span = min(kernel_size, n)
    return window_starts(n, kernel_size, device)[:, None] + torch.arange(span, device=device)


def row_pieces(n: int, kernel_size: int, offset: int) -> list[tuple[slice, slice]]:
    """Split the queries of one axis into runs whose key (for window slot ``offset``) is a slice.

    Returns ``(query_slice, key_slice)`` pairs: inside the map the key run is the query run shifted,
    at the two borders every query of the run shares one key (a length-1 slice that broadcasts).
    Used by the slot-loop CPU path (``slots``) to read shifted keys as views instead of gathered copies.

    Example:
        >>> row_pieces(5, 3, 0)
        [(slice(0, 1, None), slice(0, 1, None)), (slice(1, 4, None), slice(0, 3, None)), (slice(4, 5, None), slice(2, 3, None))]
    """
    r, span = kernel_size // 2, min(kernel_size, n)
    last_free = n - span + r  # last query whose window is not clamped
    pieces = []
    top_end = min(r, n)
    if top_end > 0:
        pieces.append((slice(0, top_end), slice(offset, offset + 1)))
    mid_start, mid_end = r, min(last_free + 1, n)
    if mid_end > mid_start:
        pieces.append((slice(mid_start, mid_end), slice(offset, offset + mid_end - mid_start)))
    bottom_start = max(last_free + 1, r)
    if bottom_start < n:
        key = n - span + offset
        pieces.append((slice(bottom_start, n), slice(key, key + 1)))
    return pieces


def relative_bias(rpb: torch.Tensor, height: int, width: int, kernel_size: int) -> torch.Tensor:
    """Gather the bias of every (query, window slot) pair, shape ``(heads, H, W, Lh * Lw)``.

    The bias of query ``p`` and key ``k`` is ``rpb[:, k_row - p_row + L - 1, k_col - p_col + L - 1]``.

    Example:
        >>> relative_bias(torch.zeros(2, 5, 5), 4, 6, 3).shape
        torch.Size([2, 4, 6, 9])
    """
    last = kernel_size - 1
    rows = neighbour_index(height, kernel_size, rpb.device)
    cols = neighbour_index(width, kernel_size, rpb.device)
    rel_rows = rows - torch.arange(height, device=rpb.device)[:, None] + last  # (H, Lh)
    rel_cols = cols - torch.arange(width, device=rpb.device)[:, None] + last  # (W, Lw)
    bias = rpb[:, rel_rows[:, None, :, None], rel_cols[None, :, None, :]]  # (heads, H, W, Lh, Lw)
    return bias.flatten(-2)


def chunk_row_pieces(n: int, kernel_size: int, offset: int, begin: int, end: int) -> tuple[slice, list[tuple[slice, slice]]]:
    """:func:`row_pieces` restricted to queries ``begin:end``, relative to the chunk.

    Returns ``key_rows`` (the key rows any window slot of the chunk touches) and
    ``(query_slice, key_slice)`` pairs relative to ``begin`` and ``key_rows.start``.

    Example:
        >>> chunk_row_pieces(6, 3, 1, 2, 6)
        (slice(1, 6, None), [(slice(0, 3, None), slice(1, 4, None)), (slice(3, 4, None), slice(3, 4, None))])
    """
    span = min(kernel_size, n)
    first = min(max(begin - kernel_size // 2, 0), n - span)
    last = min(max(end - 1 - kernel_size // 2, 0), n - span) + span
    pieces = []
    for query, key in row_pieces(n, kernel_size, offset):
        lo, hi = max(query.start, begin), min(query.stop, end)
        if lo >= hi:
            continue
        if key.stop - key.start == 1:  # one key row shared by the run (or a run of one)
            key_lo, key_hi = key.start, key.start + 1
        else:
            key_lo = key.start + lo - query.start
            key_hi = key_lo + hi - lo
        pieces.append((slice(lo - begin, hi - begin), slice(key_lo - first, key_hi - first)))
    return slice(first, last), pieces


def tile_halo_table(n: int, kernel_size: int, tile: int, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Halo geometry of ``T``-query tiles along one axis (the tiled path's layout).

    The axis is cut into ``ceil(n / T)`` tiles of ``T = min(tile, n)`` queries (the last one padded
    with copies of query ``n - 1``). Tile ``t`` reads the ``K = min(T + min(L, n) - 1, n)`` keys
    ``halo_start[t] + [0, K)``, which hold every window of its queries: windows start at most one
    key apart from one query to the next. Returns ``halo_start`` ``(tiles,)`` and ``rel``
    ``(tiles, T, K)``: the bias-table offset ``key - query + L - 1`` of every (query, halo key)
    pair, ``-1`` where the key is outside the query's clamped window.

    Example:
        >>> start, rel = tile_halo_table(10, 3, 4)  # tiles of queries 0-3, 4-7, 8-9 (+2 padding)
        >>> start.tolist(), rel.shape
        ([0, 3, 4], torch.Size([3, 4, 6]))
        >>> rel[0, 0].tolist()  # query 0 attends keys 0..2 (its window slides inward)
        [2, 3, 4, -1, -1, -1]
    """
    span, tile = min(kernel_size, n), min(tile, n)
    halo, tiles = min(tile + span - 1, n), -(-n // tile)
    query = torch.arange(tiles * tile, device=device).clamp(max=n - 1).view(tiles, tile)
    start = window_starts(n, kernel_size, device)[query]  # (tiles, T)
    halo_start = start[:, 0].clamp(max=n - halo)
    key = halo_start[:, None, None] + torch.arange(halo, device=device)  # (tiles, 1, K)
    inside = (key >= start[..., None]) & (key < start[..., None] + span)
    return halo_start, torch.where(inside, key - query[..., None] + kernel_size - 1, -1)
