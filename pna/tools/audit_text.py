"""Reading the audit's text: the vocabulary the fidelity report's readers share.

Values in ``docs/authors_audit.csv`` are short English descriptions (``"linear, 200 iters,
warmup_ratio 1e-6"``); these helpers pull numbers, tuples and required phrases out of them, and
name the formulas and reductions both sides of the comparison use.

    >>> group("ratio_range (0.5, 2.0), keep_ratio", "ratio_range"), first_int("9 in every stage")
    ((0.5, 2.0), 9)
"""
from __future__ import annotations

import re
from typing import Optional

from pna.tools.audit import AuditLine

Lines = dict[str, Optional[AuditLine]]
# Initialisation formulas by name (measured on the built model by their weight std and bias).
TORCH, XAVIER_C2, MSRA, XAVIER_UNIFORM = "torch default", "kaiming-uniform a=1", "kaiming-normal fan_out", "xavier-uniform"
NORMAL_001, NORMAL_0001 = "normal 0.01", "normal 0.001"
# Loss reductions of one output (measured on a crafted batch).
MEAN_ALL, MEAN_VALID = "mean over all pixels", "mean over labelled pixels"


class NotUnderstood(ValueError):
    """An audit line the reader of its check cannot read."""


def top_k(fraction: float, chunk: int) -> str:
    return f"top {fraction:g} of all pixels per {chunk} images"


def text_of(lines: Lines, setting: str) -> str:
    line = lines.get(setting)
    if line is None:
        raise NotUnderstood(f"no audit line for {setting!r}")
    return line.value


def numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?(?:e-?\d+)?", text)]


def first_int(text: str) -> int:
    values = numbers(text)
    if not values:
        raise NotUnderstood(f"no number in {text!r}")
    return int(values[0])


def group(text: str, after: str = "") -> tuple[float, ...]:
    """The first (a, b, ...) or [a, b, ...] group in ``text`` (after the phrase ``after``)."""
    text = text.split(after, 1)[1] if after and after in text else text
    match = re.search(r"[\(\[]([-\d.,\se]+)[\)\]]", text)
    if not match:
        raise NotUnderstood(f"no (a, b, ...) group in {text!r}")
    return tuple(numbers(match.group(1)))


def ints(values: tuple[float, ...]) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


def need(text: str, *phrases: str) -> str:
    missing = [p for p in phrases if p not in text]
    if missing:
        raise NotUnderstood(f"phrases {missing} not in {text!r}")
    return text


def is_none(text: str) -> bool:
    return text.strip().lower().startswith("none")


def fail(text: str):
    raise NotUnderstood(f"not understood: {text!r}")
