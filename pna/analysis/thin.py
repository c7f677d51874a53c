"""Thin parts: what a prediction at stride s can reach at best, and how far each stage gets.

A segmentation head at stride ``s`` gives one set of logits per ``s x s`` cell, upsampled
bilinearly to the image (as :func:`pna.engine.evaluate.predict_stage_logits` does). The *oracle at stride s*
is the best such prediction built from the labels themselves:

* ``"majority"`` (the definition the smoke goals use): each cell takes its most frequent label,
  one-hot, bilinearly upsampled, arg-maxed: "labels constant per cell, upsampled the way
  predictions are".
* ``"soft"``: each cell keeps its class fractions instead (a looser upper bound: logits can
  encode any mixture, not only one class).

Thin classes (a few pixels wide) vanish at stride 32 and survive at stride 4; the per-stage IoU
of a refinement model can be read beside these bounds (:func:`per_class_table`,
:func:`plot_thin_classes`).

Example:
    >>> import torch
    >>> label = torch.zeros(1, 32, 32, dtype=torch.long)
    >>> label[:, :, 12:18] = 1                      # a vertical stripe 6 px wide
    >>> fine, coarse = oracle_miou(label, 4, 2), oracle_miou(label, 16, 2)
    >>> round(fine["per_class_iou"][1], 2), coarse["per_class_iou"][1] < fine["per_class_iou"][1]
    (0.67, True)
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor

from pna.engine.metrics import ConfusionMatrix
from pna.engine.records import stage_scores

THIN_CLASSES = ("stripe", "ring", "speck")  # the synthetic classes a few pixels wide
STRIDES = (32, 16, 8, 4)
STAGE_STRIDES = {"P0": 32, "P1": 32, "P2": 16, "P3": 8, "P4": 4}  # the PNA stages' output strides
ORACLE_MODES = ("majority", "soft")
MIN_WINDOW_SHARE = 0.15  # thin_pixel: a query whose window holds less of its class is on a scrap


def oracle_prediction(labels: Tensor, stride: int, num_classes: int, ignore_index: int = 255,
                      mode: str = "majority") -> Tensor:
    """The oracle's class map (N, H, W) for labels (N, H, W) at ``stride`` (see the module doc).

    Ignored pixels do not vote; a cell with only ignored pixels predicts class 0.
    """
    if mode not in ORACLE_MODES:
        raise ValueError(f"mode must be one of {ORACLE_MODES}, got {mode!r}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if labels.ndim != 3:
        raise ValueError(f"labels must be (N, H, W), got shape {tuple(labels.shape)}")
    labels = labels.long()
    valid = (labels >= 0) & (labels < num_classes) & (labels != ignore_index)
    n, h, w = labels.shape
    onehot = torch.zeros(n, num_classes + 1, h, w).scatter_(1, torch.where(valid, labels, num_classes)[:, None], 1.0)
    cells = F.avg_pool2d(onehot[:, :num_classes], stride, stride, ceil_mode=True)
    if mode == "majority":
        cells = F.one_hot(cells.argmax(1), num_classes).permute(0, 3, 1, 2).float()
    up = F.interpolate(cells, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return up.argmax(1)


def oracle_miou(labels: Tensor | np.ndarray, stride: int, num_classes: int, ignore_index: int = 255,
                mode: str = "majority", class_names: Sequence[str] | None = None,
                batch: int = 16) -> dict:
    """mIoU and per-class IoU (fractions) of the oracle at ``stride`` over labels (N, H, W).

    Returns the :meth:`pna.engine.metrics.ConfusionMatrix.summary` dict (``per_class_iou`` keyed by
    ``class_names``, default the class ids).
    """
    labels = torch.as_tensor(np.asarray(labels)) if isinstance(labels, np.ndarray) else labels
    matrix = ConfusionMatrix(num_classes, ignore_index)
    for start in range(0, len(labels), batch):
        chunk = labels[start:start + batch].long()
        matrix.update(oracle_prediction(chunk, stride, num_classes, ignore_index, mode), chunk)
    summary = matrix.summary(list(class_names) if class_names else None)
    if class_names is None:
        summary["per_class_iou"] = {int(k): v for k, v in summary["per_class_iou"].items()}
    return summary


def dataset_labels(dataset, limit: int | None = None) -> Tensor:
    """The label maps (N, H, W) of a :class:`pna.data.base.SegmentationDataset` (same-size images)."""
    count = len(dataset) if limit is None else min(limit, len(dataset))
    return torch.stack([torch.from_numpy(np.array(dataset.load(i)[1])) for i in range(count)])


def oracle_table(labels: Tensor, class_names: Sequence[str], strides: Sequence[int] = STRIDES,
                 mode: str = "majority", ignore_index: int = 255) -> pd.DataFrame:
    """IoU (%) of the oracle per stride: one line per stride, columns mIoU and every class."""
    lines = []
    for stride in strides:
        s = oracle_miou(labels, stride, len(class_names), ignore_index, mode, class_names)
        lines.append({"stride": stride, "mIoU": 100 * s["mIoU"],
                      **{c: 100 * (v if v is not None else float("nan")) for c, v in s["per_class_iou"].items()}})
    return pd.DataFrame(lines).set_index("stride")


def per_class_table(metrics: Mapping) -> pd.DataFrame:
    """IoU (%) per stage and class of one run's metrics (``RunResult.metrics``): stages as lines."""
    lines = {stage: stage_scores(metrics, stage) for stage in metrics["stages"]}
    return pd.DataFrame.from_dict(lines, orient="index").drop(columns="stage")


def thin_pixel(label: np.ndarray | Tensor, class_id: int, window: int = 36, margin: int = 16) -> tuple[int, int] | None:
    """A pixel (row, col) on the centre line of a thin part of class ``class_id``, or None.

    Chosen from the label alone, so a figure built on it stays meaningful when the data change:
    among pixels of the class at least ``margin`` from the image border and on the part's centre
    line (largest distance to other labels across its width), the one whose ``window`` x
    ``window`` neighbourhood (the stride-4 L = 9 window: 36 px) holds only this class and
    background, with as much of this class as possible (a long stretch of one stripe).

    Example:
        >>> label = np.zeros((64, 64), dtype=np.uint8)
        >>> label[30:36, 8:56] = 2                      # a horizontal stripe 6 px wide
        >>> label[2:12, 2:12] = 1                       # a disc in a corner
        >>> row, col = thin_pixel(label, 2)
        >>> int(label[row, col]), 30 <= row <= 35
        (2, True)
    """
    from scipy import ndimage

    label = label.cpu().numpy() if isinstance(label, Tensor) else np.asarray(label)
    inside = label == class_id
    if not inside.any():
        return None
    depth = ndimage.distance_transform_edt(inside)
    centre = inside & (depth >= ndimage.maximum_filter(depth, size=3) - 0.5)
    others = ~inside & (label != 0)
    mean = lambda m: ndimage.uniform_filter(m.astype(np.float32), size=window, mode="constant")
    score = mean(inside) - 10 * mean(others)  # clutter from other classes disqualifies a spot
    share = mean(inside)
    h, w = label.shape
    best = None
    # Away from the border first; a part that only runs along the border is still found closer in.
    for keep_out in (margin, margin // 2, 0):
        keep = np.zeros_like(inside)
        keep[keep_out:h - keep_out, keep_out:w - keep_out] = True
        candidates = centre & keep
        if not candidates.any():
            continue
        flat = np.where(candidates, score, -np.inf)
        best = np.unravel_index(int(np.argmax(flat)), flat.shape)
        if share[best] >= MIN_WINDOW_SHARE:
            break
    if best is None:
        best = np.unravel_index(int(np.argmax(np.where(inside, score, -np.inf))), inside.shape)
    return int(best[0]), int(best[1])


def find_thin_pixel(dataset, class_name: str = "stripe", start: int = 0,
                    limit: int = 64) -> tuple[int, tuple[int, int]]:
    """(sample index, (row, col)) of the first sample from ``start`` holding ``class_name``, with a
    pixel on it chosen by :func:`thin_pixel`; ValueError if none of ``limit`` samples has one."""
    if class_name not in dataset.classes:
        raise ValueError(f"class {class_name!r} is not one of the dataset's classes {dataset.classes}")
    class_id = dataset.classes.index(class_name)
    for index in range(start, min(len(dataset), start + limit)):
        pixel = thin_pixel(dataset.load(index)[1], class_id)
        if pixel is not None:
            return index, pixel
    raise ValueError(f"no {class_name!r} pixel in samples {start}..{start + limit - 1} of {dataset!r}")


def plot_thin_classes(run, oracle: pd.DataFrame, baselines: Mapping | None = None,
                      thin: Sequence[str] = THIN_CLASSES, title: str | None = None):
    """Thin-class IoU (%) per stage of ``run`` beside the oracle at each stage's stride.

    One panel per thin class: the run's P0..P4 (solid), the oracle of :func:`oracle_table` at the
    stride of each stage (dashed), and the final stage of each ``baselines`` run (a row name ->
    run) as a dotted level. Returns the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    stages = per_class_table(run.metrics)
    names = list(stages.index)
    strides = [STAGE_STRIDES.get(s) for s in names]
    fig, axes = plt.subplots(1, len(thin), figsize=(3.6 * len(thin), 3.2), sharey=True, squeeze=False)
    for ax, cls in zip(axes[0], thin):
        x = range(len(names))
        ax.plot(x, stages[cls], "o-", color="tab:blue", label="model")
        if all(s in oracle.index for s in strides):
            ax.plot(x, [oracle.loc[s, cls] for s in strides], "s--", color="grey", label="oracle at the stride")
        for (row, base), colour in zip((baselines or {}).items(), ("tab:red", "tab:orange", "tab:green", "tab:purple")):
            ax.axhline(stage_scores(base.metrics)[cls], ls=":", color=colour, label=row)
        ax.set_xticks(list(x), [f"{n}\n/{s}" for n, s in zip(names, strides)])
        ax.set_title(cls)
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("IoU (%)")
    axes[0][-1].legend(loc="lower right", fontsize=7)
    fig.suptitle(title or "thin classes: IoU per stage (stage / output stride)")
    fig.tight_layout()
    return fig


def window_share(attn: Tensor, label: Tensor | np.ndarray, pixel: tuple[int, int], kernel_size: int,
                 class_id: int) -> tuple[float, float]:
    """How much of one query's NAM weight falls on class ``class_id``, and what a uniform window gives.

    ``attn``: (heads, H, W, Lh*Lw) weights of one image at one stage (``model.attention_maps``);
    ``label``: (H_img, W_img) class ids; ``pixel``: the query (row, col) in image coordinates.
    Each key cell counts with the fraction of its pixels that are ``class_id``. Returns
    ``(weighted share, uniform share)`` averaged over heads: weights that follow a thin part put
    more on it than the uniform share.

    Example:
        >>> label = torch.zeros(32, 32, dtype=torch.long); label[:, 12:20] = 2   # a vertical stripe
        >>> attn = torch.full((1, 8, 8, 9), 1 / 9)                               # stride 4, L = 3
        >>> weighted, uniform = window_share(attn, label, (16, 14), 3, class_id=2)
        >>> round(weighted, 3) == round(uniform, 3), round(uniform, 3)
        (True, 0.667)
    """
    from pna.ops.window import window_starts

    label = torch.as_tensor(np.asarray(label)) if isinstance(label, np.ndarray) else label
    heads, height, width, slots = attn.shape
    stride_y, stride_x = label.shape[0] // height, label.shape[1] // width
    qy, qx = min(pixel[0] // stride_y, height - 1), min(pixel[1] // stride_x, width - 1)
    span_y, span_x = min(kernel_size, height), min(kernel_size, width)
    if span_y * span_x != slots:
        raise ValueError(f"attn has {slots} window slots, expected {span_y} x {span_x} for kernel_size {kernel_size}")
    top = int(window_starts(height, kernel_size)[qy])
    left = int(window_starts(width, kernel_size)[qx])
    target = (label == class_id).float()[None, None, : height * stride_y, : width * stride_x]
    cells = F.avg_pool2d(target, (stride_y, stride_x))[0, 0, top:top + span_y, left:left + span_x]
    weights = attn[:, qy, qx].reshape(heads, span_y, span_x).float()
    return float((weights * cells).sum((1, 2)).mean()), float(cells.mean())


@torch.no_grad()
def window_share_table(model, image: Tensor, label: Tensor | np.ndarray, pixel: tuple[int, int],
                       class_id: int) -> pd.DataFrame:
    """:func:`window_share` of one query at every refinement stage of ``model`` (a PNA Segmentor):
    one line per stage with the weighted share, the uniform share and their ratio (> 1: the
    weights follow the class)."""
    attention = model.attention_maps(image[None].to(next(model.parameters()).device))
    kernel = model.refine.stages[0].nam.window_size
    lines = {}
    for stage, attn in attention.items():
        weighted, uniform = window_share(attn[0].cpu(), label, pixel, kernel, class_id)
        lines[stage] = {"stride": STAGE_STRIDES.get(stage), "weighted": weighted, "uniform": uniform,
                        "ratio": weighted / uniform if uniform > 0 else float("nan")}
    return pd.DataFrame.from_dict(lines, orient="index")


def walkthrough_query(dataset, sample_index: int | None = None, pixel: tuple[int, int] | None = None,
                      class_name: str = "stripe") -> tuple[int, tuple[int, int], str | None]:
    """(sample index, query pixel, class it was picked on) for the walkthrough's figures.

    A ``pixel`` given is kept (class None). Otherwise, on a dataset with ``class_name`` (the
    synthetic set), the first sample from ``sample_index`` (default 0) holding it and a pixel on it
    (:func:`find_thin_pixel`); on other datasets the centre of sample ``sample_index``.
    """
    index = 0 if sample_index is None else int(sample_index)
    if isinstance(pixel, str):  # papermill's -p hands lists over as text: "40,40", "[40, 40]", "(40, 40)"
        parts = pixel.strip("()[] ").replace(",", " ").split()
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise ValueError(f"pixel must be (row, col), e.g. [40, 40] or '40,40'; got {pixel!r}")
        pixel = (int(parts[0]), int(parts[1]))
    if pixel is not None:
        return index, (int(pixel[0]), int(pixel[1])), None
    if class_name in dataset.classes:
        index, found = find_thin_pixel(dataset, class_name, start=index)
        return index, found, class_name
    height, width = dataset.load(index)[1].shape[:2]
    return index, (height // 2, width // 2), None
