"""The neighbourhood-window rule the NA tests check every path against, written once here from its
definition (docs/architecture.md: NATTEN's window start, slid inward at the borders) and not taken
from the code under test."""


def natten_start(i: int, n: int, window: int) -> int:
    """First key of query ``i`` on an axis of ``n`` pixels for a window of ``window``: centred, slid
    inward at the borders; the whole axis when the map is shorter than the window (our documented
    extension)."""
    if n < window:
        return 0
    r = window // 2
    return max(i - r, 0) + (n - 1 - r - i if i + r >= n else 0)
