"""Boundary figures: mIoU, Boundary IoU and trimap mIoU per stage (one figure per paper table),
and, for one image, the band around the label's boundaries with the pixels a later stage fixed
(or broke) inside and outside it. Every plot function returns a matplotlib Figure.

Example::

    >>> import torch
    >>> label = torch.zeros(8, 8, dtype=torch.long); label[:, 4:] = 1
    >>> p0 = torch.zeros(8, 8, dtype=torch.long); p4 = label.clone(); p4[0, 0] = 1
    >>> band_fixes(label, {"P0": p0, "P4": p4}, width=1)[["pixels", "fixed", "broken"]].values.tolist()
    [[16, 8, 0], [48, 24, 1], [64, 32, 1]]
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from pna.engine.boundary import DILATION_RATIO, pixels_of
from pna.engine.morphology import transition_band

FIXED_COLOUR, BROKEN_COLOUR, BAND_COLOUR = (0.1, 0.7, 0.2), (0.85, 0.1, 0.1), (0.75, 0.75, 0.75)
METRIC_STYLES = {"mIoU": ("black", "-"), "Boundary IoU": ("tab:red", "-")}


def plot_boundary_stages(frame: pd.DataFrame, title: str = "", columns: int = 4):
    """One panel per row of ``frame`` (:func:`pna.analysis.boundary_report.boundary_frame`, index
    (row, stage)): mIoU, Boundary IoU and trimap mIoU at every width (light = narrow band)
    against the stage."""
    import matplotlib.pyplot as plt

    rows = list(dict.fromkeys(frame.index.get_level_values("row")))
    columns = max(1, min(columns, len(rows)))
    nrows = -(-len(rows) // columns) if rows else 1
    fig, axes = plt.subplots(nrows, columns, figsize=(3.4 * columns, 2.8 * nrows), squeeze=False, sharey=True)
    trimap = [c for c in frame.columns if c.startswith("trimap ")]
    shades = plt.get_cmap("Blues")(np.linspace(0.35, 0.95, max(len(trimap), 1)))
    for ax, row in zip(axes.flat, rows):
        part = frame.loc[row]
        x = np.arange(len(part))
        for column, shade in zip(trimap, shades):
            ax.plot(x, part[column], color=shade, linewidth=1, marker=".", label=column)
        for column, (colour, style) in METRIC_STYLES.items():
            ax.plot(x, part[column], color=colour, linestyle=style, linewidth=2, marker="o", label=column)
        ax.set_xticks(x, list(part.index))
        ax.set_title(row, fontsize="small")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("%")
    for ax in list(axes.flat)[len(rows):]:
        ax.set_axis_off()
    if rows:
        handles, labels = axes.flat[0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 8), fontsize="x-small", frameon=False)
    fig.suptitle(title, fontsize="medium")
    fig.tight_layout(rect=(0, 0.08 if nrows == 1 else 0.04, 1, 1))
    return fig


def label_band(label: Tensor, width: int, ignore_index: int = 255) -> Tensor:
    """Evaluated pixels of ``label`` within ``width`` px of a pixel of another label (ignored
    pixels count as another label; the image border does not): the trimap band."""
    valid = label != ignore_index
    return transition_band(label.long(), width) & valid


def band_fixes(label: Tensor, predictions: Mapping[str, Tensor], width: int | None = None,
               first: str = "P0", last: str = "P4", ignore_index: int = 255) -> pd.DataFrame:
    """Pixels that ``last`` gets right and ``first`` wrong (fixed) and the reverse (broken),
    inside and outside the band of ``width`` px around the label's boundaries (default: Boundary
    IoU's d for this image size, 2% of its diagonal)."""
    width = width or pixels_of(DILATION_RATIO, *label.shape[-2:])
    valid = label != ignore_index
    band = label_band(label, width, ignore_index)
    wrong_first, wrong_last = (predictions[first] != label) & valid, (predictions[last] != label) & valid
    lines = {}
    for name, region in (("inside the band", band), ("outside the band", valid & ~band), ("all", valid)):
        lines[name] = {"pixels": int(region.sum()), f"wrong at {first}": int((wrong_first & region).sum()),
                       f"wrong at {last}": int((wrong_last & region).sum()),
                       "fixed": int((wrong_first & ~wrong_last & region).sum()),
                       "broken": int((~wrong_first & wrong_last & region).sum())}
    frame = pd.DataFrame.from_dict(lines, orient="index")
    frame["share of pixels (%)"] = 100 * frame["pixels"] / max(int(frame.loc["all", "pixels"]), 1)
    frame["share of all fixed (%)"] = 100 * frame["fixed"] / max(int(frame.loc["all", "fixed"]), 1)
    frame.attrs["width"] = width
    return frame


def plot_band_fixes(image: Tensor, label: Tensor, predictions: Mapping[str, Tensor], palette: Sequence[Sequence[int]],
                    width: int | None = None, first: str = "P0", last: str = "P4", ignore_index: int = 255,
                    size: float = 2.2):
    """Image with the boundary band, label, ``first``, ``last``, and the pixels ``last`` fixed
    (green) or broke (red) relative to ``first`` over the band (grey)."""
    import matplotlib.pyplot as plt

    from pna.analysis.figures import colorize, to_display_image

    width = width or pixels_of(DILATION_RATIO, *label.shape[-2:])
    band = label_band(label, width, ignore_index).numpy()
    valid = (label != ignore_index).numpy()
    wrong_first = (predictions[first] != label).numpy() & valid
    wrong_last = (predictions[last] != label).numpy() & valid
    changes = np.ones((*band.shape, 3))
    changes[band] = BAND_COLOUR
    changes[wrong_first & ~wrong_last] = FIXED_COLOUR
    changes[~wrong_first & wrong_last] = BROKEN_COLOUR
    picture = to_display_image(image)
    shaded = picture.copy()
    shaded[band] = 0.5 * shaded[band] + 0.5 * np.asarray(BAND_COLOUR)
    fig, axes = plt.subplots(1, 5, figsize=(5 * size, size), squeeze=False)
    panels = [(shaded, f"image, band {width} px"), (colorize(label, palette), "label"),
              (colorize(predictions[first], palette), first), (colorize(predictions[last], palette), last),
              (changes, f"{last} vs {first}: fixed / broken")]
    for ax, (picture, title) in zip(axes[0], panels):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(title, fontsize="small")
        ax.set_axis_off()
    fig.tight_layout()
    return fig


def band_fix_report(image: Tensor, label: Tensor, predictions: Mapping[str, Tensor], palette: Sequence[Sequence[int]],
                    width: int | None = None, ignore_index: int = 255) -> tuple[object, pd.DataFrame]:
    """The walkthrough's view of one image: :func:`plot_band_fixes` and :func:`band_fixes`."""
    label = torch.as_tensor(label)
    return (plot_band_fixes(image, label, predictions, palette, width, ignore_index=ignore_index),
            band_fixes(label, predictions, width, ignore_index=ignore_index))
