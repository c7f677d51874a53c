"""The class order of an authors' checkpoint where their label ids are not ours (DeepGlobe).

A model's class channels appear in three places: the output channels of the coarse classifier and of
every stage classifier, and the input channels of every stage's value embedding (the previous
stage's logits). Reordering all three by one permutation gives the same model with relabelled
outputs, so their file scores on our labels.

DeepGlobe: the authors' label files are not shipped; their colour table lists MagNet's ids (0 unknown,
1 urban, ..., 6 barren; ``docs/authors_audit_findings.md`` (e)), which is the default reading
(``"magnet"``); ``"ours"`` loads the channels as they are (their labels in our order: urban 0 ...
barren 5, unknown 6). Evaluating both on real tiles tells them apart: the wrong one scores near chance.

Example:
    >>> their_channels("deepglobe", "magnet")    # our class j is their channel index[j]
    (1, 2, 3, 4, 5, 6, 0)
    >>> their_channels("voc", None) is None
    True
"""
from __future__ import annotations

import re
from typing import Mapping

import torch
from torch import Tensor

from pna.data.deepglobe import MAGNET_TO_OURS

from .convert import ConversionReport

# dataset -> {reading: their id k -> our id}; the first reading is the default
ORDERS: dict[str, dict[str, tuple[int, ...] | None]] = {"deepglobe": {"magnet": MAGNET_TO_OURS, "ours": None}}
_OUTPUT_CHANNELS = re.compile(r"(head\.classifier\.\d+|refine\.stages\.\d+\.classifier)\.(weight|bias)")
_INPUT_CHANNELS = re.compile(r"refine\.stages\.\d+\.value\.weight")


def their_channels(dataset: str, reading: str | None) -> tuple[int, ...] | None:
    """For each of our class ids, their channel (None: the same order). ``reading`` None = the default."""
    orders = ORDERS.get(dataset)
    if orders is None:
        if reading not in (None, "ours"):
            raise ValueError(f"class_order {reading!r}: the authors' {dataset} labels use our order")
        return None
    reading = reading or next(iter(orders))
    if reading not in orders:
        raise ValueError(f"class_order must be one of {sorted(orders)} for {dataset}, got {reading!r}")
    to_ours = orders[reading]
    return None if to_ours is None else tuple(to_ours.index(j) for j in range(len(to_ours)))


def reorder_classes(converted: Mapping[str, Tensor], index: tuple[int, ...], report: ConversionReport,
                    why: str) -> dict[str, Tensor]:
    """``converted`` with every class channel taken from their channel ``index[j]``; listed in the report."""
    out = dict(converted)
    for key, value in converted.items():
        dim = 0 if _OUTPUT_CHANNELS.fullmatch(key) else 1 if _INPUT_CHANNELS.fullmatch(key) else None
        if dim is None:
            continue
        if value.shape[dim] != len(index):
            raise ValueError(f"{key}: {value.shape[dim]} class channels, the class order has {len(index)}")
        out[key] = value.index_select(dim, value.new_tensor(index, dtype=torch.long)).contiguous()
        report.reordered[key] = why
    return out
