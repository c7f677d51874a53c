"""Figures: P0-P4 refinement panels (the paper's Fig. 3), NAM similarity maps, window borders,
training curves (the interactive NAM explorer is :mod:`pna.analysis.explorer`). Every plot function returns a
matplotlib Figure and draws nothing on import.

Example::

    >>> import numpy as np
    >>> from pna.analysis.figures import colorize
    >>> colorize(np.array([[0, 1], [255, 1]]), [(0, 0, 0), (128, 0, 0)]).shape
    (2, 2, 3)
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence


import numpy as np
import torch

from pna.data.catalog import IGNORE_COLOUR, colorize  # noqa: F401 (colorize: also this module's API)
from pna.engine.watch import read_run_log


def _figure(nrows: int, ncols: int, size: float = 2.2):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    return fig, axes


def to_display_image(image: torch.Tensor) -> np.ndarray:
    """A normalised (3, H, W) tensor -> (H, W, 3) floats in [0, 1] for imshow."""
    from pna.data.transforms import denormalize

    return denormalize(image.detach().cpu()).clamp(0, 1).permute(1, 2, 0).numpy()


@torch.no_grad()
def predict_labels(model: torch.nn.Module, image: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every prediction (P0..P4) of a segmentor for one normalised (3, H, W) image, at the image
    size and arg-maxed: ``{"P0": LongTensor (H, W), ...}``."""
    from pna.engine.evaluate import predict_stage_logits

    model.eval()
    device = next(model.parameters()).device
    logits = predict_stage_logits(model, image[None].to(device))
    return {name: value[0].argmax(0).cpu() for name, value in logits.items()}


def class_legend(fig, maps: Sequence, palette: Sequence[Sequence[int]], class_names: Sequence[str],
                 ignore_index: int = 255) -> None:
    """A legend below ``fig`` naming the colour of every class that occurs in ``maps`` (class-id maps),
    plus the ignored border when it occurs."""
    from matplotlib.patches import Patch

    present = set()
    for m in maps:
        present |= set(np.unique(m.cpu().numpy() if isinstance(m, torch.Tensor) else np.asarray(m)).tolist())
    handles = [Patch(facecolor=np.asarray(palette[c]) / 255, edgecolor="0.5", label=str(class_names[c]))
               for c in sorted(present) if c < min(len(palette), len(class_names))]
    if ignore_index in present:
        handles.append(Patch(facecolor=np.asarray(IGNORE_COLOUR) / 255, edgecolor="0.5", label="ignored"))
    if handles:
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), frameon=False,
                   bbox_to_anchor=(0.5, 0.0), fontsize="small")


def plot_refinement(samples: Sequence[Mapping], palette: Sequence[Sequence[int]], stage_names: Sequence[str] | None = None,
                    class_names: Sequence[str] | None = None, size: float = 2.2):
    """One row per sample: image, label, then every stage P0..P4 (the paper's Fig. 3).

    Each sample is ``{"image": (3, H, W) normalised, "label": (H, W), "predictions": {stage: (H, W)}}``
    (``predictions`` as returned by :func:`predict_labels`). With ``class_names`` (e.g.
    ``dataset.classes``) a legend below names the colour of each class shown; ``size``: inches per panel."""
    stage_names = list(stage_names or samples[0]["predictions"].keys())
    fig, axes = _figure(len(samples), 2 + len(stage_names), size=size)
    for row, sample in zip(axes, samples):
        row[0].imshow(to_display_image(sample["image"]))
        row[1].imshow(colorize(sample["label"], palette))
        for ax, stage in zip(row[2:], stage_names):
            ax.imshow(colorize(sample["predictions"][stage], palette))
    for ax, title in zip(axes[0], ["image", "label", *stage_names]):
        ax.set_title(title)
    fig.tight_layout()
    if class_names is not None:
        maps = [s["label"] for s in samples] + [s["predictions"][k] for s in samples for k in stage_names]
        class_legend(fig, maps, palette, class_names)
        fig.subplots_adjust(bottom=0.1 + 0.12 / len(samples))  # room for the legend
    return fig


def window_origin(index: int, length: int, kernel_size: int) -> int:
    """First row (or column) of the clamped neighbourhood window of ``index`` along an axis of
    ``length``: windows shift inward at the borders instead of being zero padded (NATTEN)."""
    from pna.ops.window import window_starts

    return int(window_starts(length, kernel_size)[index])


def neighbourhood_map(attn: torch.Tensor, pixel: tuple[int, int], kernel_size: int) -> torch.Tensor:
    """Spread one pixel's window weights over the map.

    ``attn``: (heads, H, W, Lh*Lw) attention weights of one image (as returned by the NAM);
    returns (heads, H, W) with the pixel's weights at its window's place and zeros elsewhere."""
    heads, height, width, slots = attn.shape
    win_h, win_w = min(kernel_size, height), min(kernel_size, width)
    if win_h * win_w != slots:
        raise ValueError(f"attn has {slots} window slots; expected {win_h}x{win_w} for kernel_size={kernel_size} on a {height}x{width} map")
    y, x = pixel
    if not (0 <= y < height and 0 <= x < width):
        raise ValueError(f"pixel {pixel} lies outside the {height}x{width} map")
    top, left = window_origin(y, height, kernel_size), window_origin(x, width, kernel_size)
    full = attn.new_zeros(heads, height, width)
    full[:, top : top + win_h, left : left + win_w] = attn[:, y, x].reshape(heads, win_h, win_w)
    return full


def plot_similarity_stages(image: torch.Tensor, attention: Mapping[str, torch.Tensor], pixel: tuple[int, int],
                           kernel_size: int, max_heads: int = 4, size: float = 1.7):
    """One row per stage: the image with the query pixel (red) and its window (cyan), then that
    pixel's similarity weights for each head (the first ``max_heads``) over the image.

    ``attention``: ``{stage: (heads, h, w, Lh*Lw)}`` of one image (``model.attention_maps(x)`` with
    the batch index taken); ``pixel`` is (row, col) in image coordinates. Within a row every head
    shares one colour scale."""
    from matplotlib.patches import Rectangle

    picture = to_display_image(image)
    height, width = picture.shape[:2]
    heads = min(max(a.shape[0] for a in attention.values()), max_heads)
    fig, axes = _figure(len(attention), 1 + heads, size=size)
    extent = (-0.5, width - 0.5, height - 0.5, -0.5)
    for row, (stage, attn) in zip(axes, attention.items()):
        _, h, w, _ = attn.shape
        cell = (min(pixel[0] * h // height, h - 1), min(pixel[1] * w // width, w - 1))
        maps = neighbourhood_map(attn, cell, kernel_size).cpu().numpy()
        top, left = window_origin(cell[0], h, kernel_size), window_origin(cell[1], w, kernel_size)
        sy, sx = height / h, width / w
        row[0].imshow(picture)
        row[0].add_patch(Rectangle((left * sx - 0.5, top * sy - 0.5), min(kernel_size, w) * sx, min(kernel_size, h) * sy,
                                   fill=False, edgecolor="cyan", linewidth=1.5))
        row[0].plot(pixel[1], pixel[0], "r+", markersize=10, mew=2)
        row[0].set_title(f"{stage}: stride {height / h:g}, {h}x{w}", fontsize="small")
        for k in range(min(heads, maps.shape[0])):
            ax = row[k + 1]
            ax.imshow(picture, alpha=0.5)
            ax.imshow(maps[k], cmap="magma", alpha=0.7, extent=extent, interpolation="nearest", vmin=0, vmax=maps.max())
            ax.set_title(f"head {k}" + (f" of {maps.shape[0]}" if maps.shape[0] > heads else ""), fontsize="small")
    fig.tight_layout()
    return fig


def plot_window_borders(height: int, width: int, kernel_size: int, pixels: Sequence[tuple[int, int]]):
    """Where the window of each listed pixel lies on a ``height x width`` map (clamped, not padded)."""
    fig, axes = _figure(1, len(pixels), size=2.4)
    for ax, (y, x) in zip(axes[0], pixels):
        grid = np.zeros((height, width))
        top, left = window_origin(y, height, kernel_size), window_origin(x, width, kernel_size)
        grid[top : top + min(kernel_size, height), left : left + min(kernel_size, width)] = 0.5
        grid[y, x] = 1.0
        ax.imshow(grid, cmap="Blues", vmin=0, vmax=1)
        ax.set_title(f"query ({y}, {x})")
    fig.tight_layout()
    return fig


def read_log(path: str | Path) -> list[dict]:
    """Records of a run's JSON-lines training log, a resumed run's iterations once each and a line
    cut short by a crash skipped (:func:`pna.engine.watch.read_run_log`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"training log {path} not found")
    return read_run_log(path)


def plot_training_curves(logs: Mapping[str, str | Path], key: str = "loss", columns: int = 3):
    """Training ``key`` against iteration, one panel per table (small multiples).

    ``logs`` is ``{label: jsonl path}``; a label ``"table1/fcn_r50_os32"`` goes to the panel
    ``table1`` as ``fcn_r50_os32`` (labels without "/" share one panel). Within a panel every run has
    its own colour and, beyond ten runs, its own line style, so no two runs look alike."""
    import matplotlib.pyplot as plt

    groups: dict[str, list[tuple[str, str | Path]]] = {}
    for label, path in logs.items():
        group, _, name = label.rpartition("/")
        groups.setdefault(group, []).append((name, path))
    columns = max(1, min(columns, len(groups)))
    rows = -(-len(groups) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.6 * columns, 3.2 * rows), squeeze=False, sharey=True)
    colours = plt.get_cmap("tab10").colors
    styles = ["-", "--", ":", "-."]
    for ax, (group, runs) in zip(axes.flat, groups.items()):
        for i, (name, path) in enumerate(runs):
            records = [r for r in read_log(path) if key in r and "iter" in r]
            ax.plot([r["iter"] for r in records], [r[key] for r in records], label=name,
                    color=colours[i % len(colours)], linestyle=styles[(i // len(colours)) % len(styles)])
        ax.set_title(group or key, fontsize="medium")
        ax.set_xlabel("iteration")
        ax.legend(fontsize="x-small", loc="upper right")
    for ax in axes[:, 0]:
        ax.set_ylabel(key)
    for ax in list(axes.flat)[len(groups):]:
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    """Write ``fig`` to ``path`` (folders created) and close it."""
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path
