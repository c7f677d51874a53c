"""Public neighbourhood attention ops: input checks and dispatch to the native/reference/slots/dense/tiled/flex paths.

Semantics (NATTEN classic 2D neighbourhood attention, see :mod:`pna.ops.window`): every query
attends to a window of ``Lh x Lw`` real pixels, ``Lh = min(L, H)``, ``Lw = min(L, W)``, slid inward
at the borders (no zero padding); a map smaller than the window along an axis attends to that whole
axis, so the window keeps only real pixels and has ``Lh * Lw`` slots (``L * L`` for maps of at
least ``L x L``). The relative position bias ``rpb`` ``(heads, 2L-1, 2L-1)`` is indexed by
``(k_row - q_row + L - 1, k_col - q_col + L - 1)``. q is NOT scaled here.
"""
from __future__ import annotations

import torch

from .na2d_cpu import na2d_attn_slots, na2d_slots
from .na2d_dense import fits_dense, na2d_attn_dense, na2d_dense
from .na2d_flex import na2d_flex
from .na2d_native import na2d_attn_native, na2d_native, supports as native_supports
from .native import available as native_available
from .na2d_reference import na2d_attn_reference, na2d_reference
from .na2d_tiled import na2d_tiled

IMPLS = ("auto", "native", "reference", "slots", "dense", "tiled", "flex")

# Measured CPU dispatch (benchmarks/na.py --dispatch, results/benchmarks/na_dispatch_cpu.csv): per
# window L, the largest H * W where dense scores win and the path for larger maps, among the
# pure-torch paths (no C++ compiler) and against the fused kernel (pna.ops.native).
CPU_DISPATCH = {3: (196, "slots"), 5: (400, "tiled"), 7: (400, "tiled"), 9: (400, "tiled"), 11: (400, "tiled")}
NATIVE_DENSE_MAX_PIXELS = {3: 0, 5: 64, 7: 144, 9: 256, 11: 256}


def _nearest(table: dict, kernel_size: int):
    return table[min(table, key=lambda size: (abs(size - kernel_size), -size))]


def _measured(kernel_size: int) -> tuple[int, str]:
    return _nearest(CPU_DISPATCH, kernel_size)


def cpu_path(height: int, width: int, kernel_size: int, native: bool | None = None) -> str:
    """The fastest path off CUDA for this map and window, from the measured tables (nearest L);
    ``native``: whether the fused kernel runs here (default: whether it builds).

    Example:
        >>> [cpu_path(s, s, 9, native=False) for s in (16, 128)], cpu_path(128, 128, 3, native=False)
        (['dense', 'tiled'], 'slots')
        >>> cpu_path(8, 8, 9, native=True), cpu_path(128, 128, 9, native=True)
        ('dense', 'native')
    """
    if native is None:
        native = native_available()
    if native:
        return "dense" if height * width <= _nearest(NATIVE_DENSE_MAX_PIXELS, kernel_size) else "native"
    dense_pixels, large = _measured(kernel_size)
    return "dense" if height * width <= dense_pixels else large


def _check(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor | None, rpb: torch.Tensor, kernel_size: int) -> None:
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be an odd int >= 1, got {kernel_size!r}")
    tensors = {"q": q, "k": k, "rpb": rpb} | ({} if v is None else {"v": v})
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    for name in ("q", "k", "v"):
        if name in tensors and tensors[name].ndim != 5:
            raise ValueError(f"{name} must have shape (B, heads, H, W, dim), got {tuple(tensors[name].shape)}")
    if k.shape != q.shape:
        raise ValueError(f"k must have the shape of q {tuple(q.shape)} (B, heads, H, W, dim), got {tuple(k.shape)}")
    if v is not None and v.shape[:4] != q.shape[:4]:
        raise ValueError(
            f"v must have shape {tuple(q.shape[:4])} + (dim_v,) to match q (B, heads, H, W), got {tuple(v.shape)}"
        )
    table = (q.shape[1], 2 * kernel_size - 1, 2 * kernel_size - 1)
    if tuple(rpb.shape) != table:
        raise ValueError(f"rpb must have shape (heads, 2L-1, 2L-1) = {table}, got {tuple(rpb.shape)}")
    for name, tensor in tensors.items():
        # rpb may keep its own floating dtype (a float32 parameter under autocast): it is cast inside
        same_dtype = tensor.dtype == q.dtype or (name == "rpb" and tensor.is_floating_point())
        if not same_dtype or tensor.device != q.device:
            raise ValueError(
                f"{name} must have q's dtype and device ({q.dtype}, {q.device}), got ({tensor.dtype}, {tensor.device})"
            )
    if not q.is_floating_point():
        raise ValueError(f"q, k, v and rpb must be floating point, got {q.dtype}")


def _bias_for(impl: str, q: torch.Tensor, rpb: torch.Tensor) -> torch.Tensor:
    """The bias in the dtype the path computes in (differentiable: the parameter and its gradient
    keep their dtype). The tiled and native paths cast it themselves (float32 for half-precision q)."""
    return rpb if impl in ("tiled", "native") else rpb.to(q.dtype)


def _resolve(impl: str, q: torch.Tensor, allowed: tuple[str, ...], kernel_size: int) -> str:
    if impl not in allowed:
        raise ValueError(f"impl must be one of {allowed}, got {impl!r}")
    if impl == "auto":
        if q.device.type == "cuda" and "flex" in allowed:
            return "flex"
        native = "native" in allowed and native_supports(q, kernel_size)
        if "tiled" not in allowed and not native:  # na2d_attn: the weights come from dense or the slot loop
            return "dense" if fits_dense(q) else "slots"
        path = cpu_path(q.shape[2], q.shape[3], kernel_size, native)
        if path == "dense" and not fits_dense(q):  # too many (batch x heads) for the score matrix
            return "native" if native else _measured(kernel_size)[1]
        return path
    if impl == "native" and not native_supports(q, kernel_size):
        raise ValueError("impl='native' needs the C++ kernel on a CPU tensor with L <= 33; it is unavailable here "
                         "(no compiler, a failed build, PNA_NATIVE_NA=0, or another device/dtype/window)")
    return impl


def na2d_attn(q: torch.Tensor, k: torch.Tensor, rpb: torch.Tensor, kernel_size: int, *, impl: str = "auto") -> torch.Tensor:
    """Softmaxed neighbourhood attention weights.

    Args:
        q, k: ``(B, heads, H, W, dim)``; q is used as given (scale it beforehand).
        rpb: relative position bias table ``(heads, 2L-1, 2L-1)``.
        kernel_size: odd window size ``L >= 1``.
        impl: ``"auto"`` (the fused CPU kernel when no gradient is needed, else ``"dense"`` on small
            maps and ``"slots"`` on the others; flex does not expose the weights), ``"native"`` (no
            gradient), ``"reference"``, ``"slots"`` or ``"dense"``.

    Returns:
        ``(B, heads, H, W, Lh * Lw)`` with ``Lh = min(L, H)``, ``Lw = min(L, W)``; slot
        ``dy * Lw + dx`` is key ``(row_start + dy, col_start + dx)`` of the clamped window.

    Example:
        >>> q = k = torch.randn(2, 3, 8, 8, 16)
        >>> na2d_attn(q, k, torch.zeros(3, 13, 13), 7).shape
        torch.Size([2, 3, 8, 8, 49])
    """
    _check(q, k, None, rpb, kernel_size)
    needs_grad = torch.is_grad_enabled() and (q.requires_grad or k.requires_grad or rpb.requires_grad)
    allowed = ("auto", "reference", "slots", "dense") + (() if needs_grad else ("native",))
    impl = _resolve(impl, q, allowed, kernel_size)
    paths = {"reference": na2d_attn_reference, "slots": na2d_attn_slots, "dense": na2d_attn_dense,
             "native": na2d_attn_native}
    return paths[impl](q, k, _bias_for(impl, q, rpb), kernel_size)


def na2d(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, rpb: torch.Tensor, kernel_size: int, *, impl: str = "auto"
) -> torch.Tensor:
    """Neighbourhood attention: softmax(q . k_window + bias) weighted sum of v_window.

    Args:
        q, k: ``(B, heads, H, W, dim)``; v: ``(B, heads, H, W, dim_v)``; q is used as given.
        rpb: relative position bias table ``(heads, 2L-1, 2L-1)``.
        kernel_size: odd window size ``L >= 1``; maps smaller than ``L`` attend to the whole axis.
        impl: ``"auto"`` (flex on CUDA; elsewhere the path the measured table picks for this map
            and window, see the module docstring), ``"reference"``, ``"slots"``, ``"dense"`` (small
            maps), ``"tiled"`` or ``"flex"``.
        rpb may keep its own floating dtype (a float32 parameter under autocast): it is cast to
        the compute dtype inside, its gradient comes back in its own dtype.

    Returns:
        ``(B, heads, H, W, dim_v)``.

    Example:
        >>> q = k = v = torch.randn(2, 3, 8, 8, 16)
        >>> na2d(q, k, v, torch.zeros(3, 17, 17), 9).shape
        torch.Size([2, 3, 8, 8, 16])
    """
    _check(q, k, v, rpb, kernel_size)
    impl = _resolve(impl, q, IMPLS, kernel_size)
    paths = {"reference": na2d_reference, "slots": na2d_slots, "dense": na2d_dense, "tiled": na2d_tiled, "flex": na2d_flex,
             "native": na2d_native}
    return paths[impl](q, k, v, _bias_for(impl, q, rpb), kernel_size)
