"""The engine that turns the authors' state dict into ours: sections, renames, shape checks, a report.

A branch's name table (:mod:`pna.authors.mmseg`, :mod:`pna.authors.detectron2`) is a list of
:class:`Section`: which of their keys it covers (a prefix), where they go in our model (our prefix)
and a ``rename`` of the rest of the key. ``rename`` returns our key (relative to our prefix), a
:class:`Mapped` key with a layout change, :data:`DERIVED` for a buffer our model recomputes, or None
when the key has no place, which is an error: every tensor of their backbone, head and refinement
must land somewhere, and every tensor of ours must be filled. The only exceptions, all reported:
BatchNorm ``num_batches_tracked`` counters a file may lack (unused in evaluation), keys outside every
section (e.g. an optimiser's), and the zero biases of embeddings their Detectron2 branch has without.

Example:
    >>> import torch
    >>> table = [Section("head", "decode_head.", "head.", regex_rename([(r"conv_seg\\.(\\w+)", r"classifier.\\1")]))]
    >>> ours = {"head.classifier.weight": torch.zeros(3, 8, 1, 1), "head.classifier.bias": torch.zeros(3)}
    >>> theirs = {"decode_head.conv_seg.weight": torch.ones(3, 8, 1, 1), "decode_head.conv_seg.bias": torch.ones(3),
    ...           "meta.step": torch.tensor(7)}
    >>> state, report = convert_state_dict(theirs, ours, table, "mm")
    >>> sorted(state), report.unused
    (['head.classifier.bias', 'head.classifier.weight'], {'meta.step': 'outside the model (no section covers it)'})
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

MAX_LISTED = 25
ABSENT_OK = re.compile(r"(^|\.)num_batches_tracked$")  # a BN counter: unused in evaluation
DERIVED = "<derived>"  # rename() result for a file buffer our model recomputes (not loaded, reported)


class AuthorsCheckpointError(ValueError):
    """An authors' checkpoint that does not fit the row's model (keys without a place, missing, shapes)."""


@dataclass(frozen=True)
class Mapped:
    """Our key for a tensor stored in another layout: ``transform`` rewrites it (same shape), ``why`` says why."""

    key: str
    transform: Callable[[Tensor], Tensor]
    why: str


Rename = Callable[[str], "str | Mapped | None"]


@dataclass(frozen=True)
class Section:
    """Their keys under ``theirs`` go, renamed by ``rename``, under our ``ours`` prefix.

    ``optional``: when our model has no tensor under ``ours`` (a row without auxiliary head), the
    section's keys are reported as unused instead of failing. ``note`` is reported when the section is
    used (e.g. an older head name read as the current one).
    """

    label: str
    theirs: str
    ours: str
    rename: Rename
    optional: bool = False
    note: str = ""


def regex_rename(rules: Sequence[tuple[str, "str | Callable[[re.Match], str | Mapped]"]]) -> Rename:
    """A rename from ``(pattern, target)`` rules: the first pattern that matches the whole key wins;
    ``target`` is a ``re.Match.expand`` template or a function of the match.

    >>> rename = regex_rename([(r"convs\\.(\\d+)\\.conv\\.(\\w+)", r"convs.\\1.0.\\2")])
    >>> rename("convs.1.conv.weight"), rename("convs.1.gn.weight")
    ('convs.1.0.weight', None)
    """
    compiled = [(re.compile(pattern), target) for pattern, target in rules]

    def rename(key: str) -> str | Mapped | None:
        for pattern, target in compiled:
            match = pattern.fullmatch(key)
            if match:
                return target(match) if callable(target) else match.expand(target)
        return None
    return rename


@dataclass
class ConversionReport:
    """What a conversion did: every file key is in ``mapping`` (as a source) or ``unused``."""

    source: str
    branch: str
    mapping: dict[str, str] = field(default_factory=dict)      # our key -> their key
    reordered: dict[str, str] = field(default_factory=dict)    # our key -> why its layout was changed
    unused: dict[str, str] = field(default_factory=dict)       # their key -> why it was not used
    absent: list[str] = field(default_factory=list)            # our keys the file lacks, kept as initialised
    zero_filled: dict[str, str] = field(default_factory=dict)  # our key -> why it is zero
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.source} ({self.branch} branch): {len(self.mapping)} tensors loaded"]
        lines += [f"  note: {note}" for note in self.notes]
        for label, items in [("layout changed", self.reordered), ("zero (not in their model)", self.zero_filled),
                             ("file keys not used", self.unused)]:
            if items:
                lines.append(f"  {label} ({len(items)}): " + _listing([f"{k} ({why})" for k, why in items.items()]))
        if self.absent:
            lines.append(f"  not in the file, kept as initialised ({len(self.absent)}): {_listing(self.absent)}")
        return "\n".join(lines)


def _listing(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED])
    return shown + (f", ... ({len(keys) - MAX_LISTED} more)" if len(keys) > MAX_LISTED else "")


def as_tensors(state: Mapping, report: ConversionReport) -> dict[str, Tensor]:
    """Tensors by key, numpy arrays (Detectron2 .pkl) converted, a ``module.`` prefix stripped (noted)."""
    tensors: dict[str, Tensor] = {}
    stripped = False
    for key, value in state.items():
        key = str(key)
        if key.startswith("module."):
            key, stripped = key[len("module."):], True
        if isinstance(value, (np.ndarray, np.generic)):
            value = torch.from_numpy(np.array(value))  # a copy; keeps 0-d arrays 0-d (BN counters)
        if isinstance(value, Tensor):
            tensors[key] = value
        else:
            report.unused[key] = f"not a tensor ({type(value).__name__})"
    if stripped:
        report.notes.append("a 'module.' prefix (DataParallel) was stripped from the keys")
    return tensors


def _section_of(key: str, sections: Sequence[Section]) -> Section | None:
    return next((s for s in sections if key.startswith(s.theirs)), None)


def convert_state_dict(state: Mapping, ours: Mapping[str, Tensor], sections: Sequence[Section], branch: str,
                       source: str = "state dict", zero_fill: Mapping[str, str] | None = None,
                       ) -> tuple[dict[str, Tensor], ConversionReport]:
    """Their ``state`` as a state dict for the model whose ``state_dict()`` is ``ours``.

    ``zero_fill`` maps a pattern of our keys to the reason they may be filled with zeros when the file
    has no tensor for them. Raises :class:`AuthorsCheckpointError` naming every key without a place,
    every model tensor left unfilled, and both shapes of every mismatch.
    """
    report = ConversionReport(source, branch)
    tensors = as_tensors(state, report)
    placed: dict[str, tuple[str, Mapped | None]] = {}  # our key -> (their key, layout change)
    no_place: list[str] = []
    collisions: list[str] = []
    used_sections: set[str] = set()
    for key, value in tensors.items():
        section = _section_of(key, sections)
        if section is None:
            report.unused[key] = "outside the model (no section covers it)"
            continue
        target = section.rename(key[len(section.theirs):])
        if target == DERIVED:
            report.unused[key] = "a buffer our model computes itself"
            continue
        has_part = any(k.startswith(section.ours) for k in ours)
        if section.optional and not has_part:
            report.unused[key] = f"{section.label}: this row's model has none (training only)"
            continue
        mapped = target if isinstance(target, Mapped) else None
        our_key = None if target is None else section.ours + (mapped.key if mapped else target)
        if our_key is None or our_key not in ours:
            no_place.append(f"{key} ({section.label}" + (f", read as {our_key})" if our_key else ")"))
            continue
        if our_key in placed:
            collisions.append(f"{placed[our_key][0]} and {key} -> {our_key}")
            continue
        placed[our_key] = (key, mapped)
        used_sections.add(section.label)
        if section.note and section.note not in report.notes:
            report.notes.append(section.note)
    mismatched = [f"{theirs} {tuple(tensors[theirs].shape)} -> {k} {tuple(ours[k].shape)}"
                  for k, (theirs, _) in placed.items() if tuple(tensors[theirs].shape) != tuple(ours[k].shape)]
    missing: list[str] = []
    for key in ours:
        if key in placed:
            continue
        reason = next((why for pattern, why in (zero_fill or {}).items() if re.fullmatch(pattern, key)), None)
        if reason is not None:
            report.zero_filled[key] = reason
        elif ABSENT_OK.search(key):
            report.absent.append(key)
        else:
            missing.append(key)
    problems = []
    if no_place:
        problems.append(f"{len(no_place)} file keys with no place in the model: {_listing(no_place)}")
    if collisions:
        problems.append(f"file keys mapped to the same model tensor: {_listing(collisions)}")
    if missing:
        problems.append(f"{len(missing)} model tensors not in the file: {_listing(missing)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches (file -> model): {_listing(mismatched)}")
    if problems:
        raise AuthorsCheckpointError(f"{source} does not fit the model (read as the authors' {branch} "
                                     "branch): " + "; ".join(problems))
    converted: dict[str, Tensor] = {}
    for our_key, (theirs, mapped) in placed.items():
        value = tensors[theirs]
        if mapped is not None:
            value = mapped.transform(value)
            report.reordered[our_key] = mapped.why
        converted[our_key] = value
        report.mapping[our_key] = theirs
    for key in report.zero_filled:
        converted[key] = torch.zeros_like(ours[key])
    return converted, report


def load_converted(model: torch.nn.Module, converted: Mapping[str, Tensor], report: ConversionReport) -> None:
    """Load ``converted`` into ``model``; only the reported absent counters may stay as they were."""
    missing, unexpected = model.load_state_dict(dict(converted), strict=False)
    if unexpected or set(missing) != set(report.absent):
        raise AuthorsCheckpointError(f"{report.source}: loading left {sorted(set(missing) - set(report.absent))} "
                                     f"unfilled and found no place for {sorted(unexpected)}")
