"""Batching training samples of different sizes the way the authors' Detectron2 model does.

Detectron2 does not pad in its data pipeline: each per-GPU batch is padded inside the model, after
normalisation, at the bottom and right (images with 0, labels with the ignore id) to the largest
height and width in the batch, rounded up to the backbone's size divisibility (32 for the FPN rows;
docs/authors_settings.md, "Padding"). :func:`pad_collate` does that for one process's batch.
Samples that are all the same size, with sides that are multiples of ``size_divisor``, are simply
stacked, so MMSeg-style crops (padded to the crop size in the transform) batch as before.

Example:
    >>> import torch
    >>> items = [{"image": torch.ones(3, 5, 7), "label": torch.zeros(5, 7, dtype=torch.long), "id": "a"},
    ...          {"image": torch.ones(3, 6, 4), "label": torch.zeros(6, 4, dtype=torch.long), "id": "b"}]
    >>> batch = pad_collate(items, size_divisor=4)
    >>> tuple(batch["image"].shape), batch["label"][1, 0].tolist(), batch["id"]
    ((2, 3, 8, 8), [0, 0, 0, 0, 255, 255, 255, 255], ['a', 'b'])
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .catalog import IGNORE_INDEX


def padded_size(sizes: list[tuple[int, int]], size_divisor: int = 1) -> tuple[int, int]:
    """The largest height and width of ``sizes``, each rounded up to a multiple of ``size_divisor``.

    >>> padded_size([(508, 508), (500, 508)], 32)
    (512, 512)
    """
    if size_divisor < 1:
        raise ValueError(f"size_divisor must be >= 1, got {size_divisor}")
    h, w = max(s[0] for s in sizes), max(s[1] for s in sizes)
    return -(-h // size_divisor) * size_divisor, -(-w // size_divisor) * size_divisor


def pad_collate(items: list[dict], size_divisor: int = 1, ignore_index: int = IGNORE_INDEX) -> dict:
    """Stack ``{"image", "label", "id"}`` items, padding each at the bottom/right to the batch's
    :func:`padded_size` (image 0, i.e. the mean colour after normalisation; label ``ignore_index``).

    ``"extent"`` ((N, 2) long) is each item's own padded size: a run of consecutive items cropped to
    the largest extent among them is exactly what padding that run alone gives (bottom/right padding;
    rounding up is monotonic), which is how a micro-batch gets the padding of the authors' per-GPU
    batch (:func:`pna.engine.batch_split.micro_batches`)."""
    sizes = [tuple(it["image"].shape[-2:]) for it in items]
    h, w = padded_size(sizes, size_divisor)

    def pad(x: torch.Tensor, value: int) -> torch.Tensor:
        return F.pad(x, (0, w - x.shape[-1], 0, h - x.shape[-2]), value=value)

    return {"image": torch.stack([pad(it["image"], 0) for it in items]),
            "label": torch.stack([pad(it["label"], ignore_index) for it in items]),
            "id": [it["id"] for it in items],
            "extent": torch.tensor([padded_size([s], size_divisor) for s in sizes], dtype=torch.long)}
