"""Pictures of a prediction a person can read: the overlay with its class legend, and the stage figure.

* :func:`overlay`: the image blended with the class colours, and beside it a legend of the classes
  the prediction holds (largest first), drawn with Pillow.
* :func:`stage_figure`: one figure per image: the image and P0..P4 in the top row; below each
  refinement stage, the pixels it changed (magenta over the faded image, with the share of the
  image; the row above says what they became), so the refinement is visible at a glance. One
  highlight colour, not the new class's: a change to a dark or a white class would not show. Drawn with matplotlib's
  object API (no pyplot state: safe in a loop and in a notebook).

Example::

    >>> rgb = np.zeros((20, 30, 3), np.uint8)
    >>> labels = np.zeros((20, 30), np.uint8); labels[:, 15:] = 1
    >>> picture = overlay(rgb, labels, [(0, 0, 0), (255, 0, 0)], ["background", "thing"])
    >>> picture.size[1] >= 20 and picture.size[0] > 30
    True
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

OVERLAY_ALPHA = 0.5     # share of the class colour in the blend
LEGEND_ROWS = 24        # at most this many classes are listed (the largest), "+N more" after them
FADED = 0.35            # share of the image in the faded (light grey) background of the change maps
CHANGED = (230, 0, 170)  # the changed pixels' highlight
PANEL_INCHES = 2.6      # width of one panel of the stage figure
FIGURE_DPI = 110


def colour(labels: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """Train ids -> RGB uint8 with ``palette`` (ids beyond it black)."""
    table = np.zeros((256, 3), dtype=np.uint8)
    table[: len(palette)] = np.asarray(palette, dtype=np.uint8)[:256]
    return table[np.asarray(labels).astype(np.int64).clip(0, 255)]


def present_classes(labels: np.ndarray, limit: int = LEGEND_ROWS) -> tuple[list[int], int]:
    """The class ids in ``labels``, largest area first (at most ``limit``), and how many were left out."""
    counts = np.bincount(np.asarray(labels).ravel().astype(np.int64))
    order = [int(k) for k in np.argsort(-counts, kind="stable") if counts[k] > 0]
    return order[:limit], max(0, len(order) - limit)


def _font(size: int):
    return ImageFont.load_default(size=size)


def legend(classes: Sequence[str], palette: Sequence[Sequence[int]], ids: Sequence[int], more: int,
           height: int) -> Image.Image:
    """A white panel listing ``ids`` as a colour swatch and the class name, one per row."""
    size = int(np.clip(height / 30, 11, 28))
    font, row = _font(size), int(size * 1.5)
    width = 3 * size + max([int(font.getlength(str(classes[k]) if k < len(classes) else str(k))) for k in ids] + [0]) + size
    panel = Image.new("RGB", (max(width, 8 * size), max(height, row * (len(ids) + 2))), "white")
    draw = ImageDraw.Draw(panel)
    for n, k in enumerate(ids):
        top = size // 2 + n * row
        draw.rectangle([size // 2, top, size // 2 + size, top + size], fill=tuple(int(c) for c in palette[k]),
                       outline=(90, 90, 90))
        draw.text((2 * size, top - size // 8), str(classes[k]) if k < len(classes) else str(k), fill="black", font=font)
    if more:
        draw.text((2 * size, size // 2 + len(ids) * row), f"+{more} more", fill="gray", font=font)
    return panel


def overlay(rgb: np.ndarray, labels: np.ndarray, palette: Sequence[Sequence[int]], classes: Sequence[str],
            alpha: float = OVERLAY_ALPHA) -> Image.Image:
    """``rgb`` blended with the colours of ``labels``, and a legend of the classes present at the right."""
    blend = ((1 - alpha) * rgb.astype(np.float32) + alpha * colour(labels, palette)).round().astype(np.uint8)
    picture = Image.fromarray(blend)
    ids, more = present_classes(labels)
    panel = legend(classes, palette, ids, more, picture.height)
    out = Image.new("RGB", (picture.width + panel.width, max(picture.height, panel.height)), "white")
    out.paste(picture, (0, 0))
    out.paste(panel, (picture.width, 0))
    return out


def changed_pixels(rgb: np.ndarray, before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, float]:
    """The faded grey image with the pixels where ``after`` differs from ``before`` highlighted,
    and the share of the image they cover."""
    changed = np.asarray(before) != np.asarray(after)
    grey = rgb.astype(np.float32).mean(axis=2, keepdims=True)
    picture = np.repeat(FADED * grey + (1 - FADED) * 255, 3, axis=2).astype(np.uint8)
    picture[changed] = CHANGED
    return picture, float(changed.mean())


def stage_figure(rgb: np.ndarray, stages: Mapping[str, np.ndarray], palette: Sequence[Sequence[int]],
                 classes: Sequence[str], title: str = ""):
    """The image, every stage's labels, and the pixels each stage changed (a matplotlib Figure)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    names = list(stages)
    h, w = rgb.shape[:2]
    columns = len(names) + 1
    panel_h = PANEL_INCHES * h / w
    fig = Figure(figsize=(PANEL_INCHES * columns, 2 * panel_h + 0.9), dpi=FIGURE_DPI, layout="constrained")
    axes = fig.subplots(2, columns, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    axes[0, 0].imshow(rgb)
    axes[0, 0].set_title(f"image {w}x{h}", fontsize=9)
    for n, name in enumerate(names, start=1):
        axes[0, n].imshow(colour(stages[name], palette), interpolation="nearest")
        axes[0, n].set_title(name, fontsize=9)
        if n == 1:
            axes[1, n].text(0.5, 0.5, f"{name}: the coarse prediction\nbelow: what each\nlater stage changed",
                            ha="center", va="center", fontsize=8, transform=axes[1, n].transAxes)
            continue
        picture, share = changed_pixels(rgb, stages[names[n - 2]], stages[name])
        axes[1, n].imshow(picture, interpolation="nearest")
        axes[1, n].set_title(f"{names[n - 2]} -> {name}: {100 * share:.1f}% changed (magenta)", fontsize=8)
    ids, more = present_classes(np.concatenate([np.asarray(s).ravel() for s in stages.values()]), limit=12)
    handles = [Patch(facecolor=np.asarray(palette[k]) / 255, edgecolor="0.4",
                     label=str(classes[k]) if k < len(classes) else str(k)) for k in ids]
    axes[1, 0].legend(handles=handles, loc="center", fontsize=7, frameon=False,
                      title=f"classes (+{more} more)" if more else "classes", title_fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig
