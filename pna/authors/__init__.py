"""The authors' released PNA models, loaded into our rows without MMSeg, Detectron2 or NATTEN.

``load_authors_model(file, "cityscapes/fpn_r52_pna")`` builds the row's model (paper profile),
converts the file's state dict with the name table of the row's code base (:mod:`.mmseg` for VOC and
COCO-Stuff rows, :mod:`.detectron2` for Cityscapes, DeepGlobe and Trans10k rows; :mod:`.stage` for
the PNA head both share), loads it and returns the model with a :class:`ConversionReport`.
:func:`pna.engine.evaluate.evaluate_authors_checkpoint` scores it on the row's evaluation split
(``pna evaluate --authors-checkpoint FILE --config NAME --root DATA``).

Containers: MMSeg ``{'meta', 'state_dict', 'optimizer'}``, Detectron2 ``{'model', ...}`` (``.pth``, or a
``.pkl`` of numpy arrays); a bare state dict works too.

Example:
    >>> authors_branch("voc/fcn_r50_os32_pna"), authors_branch("cityscapes/fpn_r52_pna")
    ('mm', 'd2')
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from . import detectron2, mmseg
from .classes import ORDERS, reorder_classes, their_channels
from .convert import AuthorsCheckpointError, ConversionReport, Section, convert_state_dict, load_converted

__all__ = ["AuthorsCheckpointError", "ConversionReport", "authors_branch", "convert_for_model",
           "load_authors_model", "name_table"]

BRANCH_NAMES = {"mm": "MMSegmentation", "d2": "Detectron2"}


def authors_branch(config_name: str) -> str:
    """``"mm"`` or ``"d2"``: the authors' code base that trained the row ``config_name``."""
    from pna.configs import ROWS
    from pna.configs.authors import AUTHORS

    if config_name not in ROWS:
        raise ValueError(f"unknown config {config_name!r}; expected one of pna.configs.list_configs()")
    return AUTHORS[ROWS[config_name].setting].branch


def name_table(spec, branch: str) -> tuple[list[Section], dict[str, str]]:
    """The sections and zero-fill rules converting ``branch``'s keys into the model of ``spec``."""
    if branch == "mm":
        return mmseg.sections(spec), {}
    if branch == "d2":
        return detectron2.sections(spec), detectron2.zero_fill(spec)
    raise ValueError(f"branch must be 'mm' or 'd2', got {branch!r}")


def detect_branch(keys) -> str | None:
    """The branch a state dict's keys look like (None when neither)."""
    keys = [str(k).removeprefix("module.") for k in keys]
    if any(k.startswith("decode_head.") for k in keys):
        return "mm"
    if any(k.startswith("sem_seg_head.") for k in keys):
        return "d2"
    return None


def _state_of(source: str | Path | Mapping) -> tuple[Mapping, str]:
    if isinstance(source, Mapping):
        for key in ("state_dict", "model"):  # MMSeg / Detectron2 containers
            if isinstance(source.get(key), Mapping):
                return source[key], f"a {{{', '.join(map(repr, source))}}} container"
        return source, "a state dict"
    from pna.models.backbones.checkpoint_io import read_checkpoint

    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"authors' checkpoint not found: {path}")
    return read_checkpoint(path), str(path)


def convert_for_model(source: str | Path | Mapping, model: nn.Module, spec, branch: str,
                      ) -> tuple[dict[str, torch.Tensor], ConversionReport]:
    """Their checkpoint (file or dict) as a state dict for ``model`` (built from ``spec``); nothing is loaded."""
    state, label = _state_of(source)
    found = detect_branch(state)
    if found is not None and found != branch:
        raise AuthorsCheckpointError(f"{label} looks like a {BRANCH_NAMES[found]} checkpoint, but the row is from "
                                     f"the authors' {BRANCH_NAMES[branch]} branch")
    sections, zero_fill = name_table(spec, branch)
    return convert_state_dict(state, model.state_dict(), sections, branch, label, zero_fill)


def load_authors_model(source: str | Path | Mapping, config_name: str, num_classes: int | None = None,
                       class_order: str | None = None, **overrides: Any) -> tuple[nn.Module, ConversionReport]:
    """The model of row ``config_name`` (paper profile) holding the authors' weights from ``source``.

    ``num_classes`` defaults to the row's training dataset's; ``class_order`` is how their label ids map
    to ours where that is uncertain (DeepGlobe: ``"magnet"``, the default, or ``"ours"``; :mod:`.classes`);
    ``overrides`` change the model spec (e.g. for tests). Raises :class:`AuthorsCheckpointError` naming
    any key that does not fit.
    """
    from pna.configs import load_config
    from pna.data import info
    from pna.models import get_spec
    from pna.models.factory import build_from_spec

    cfg = load_config(config_name, "paper")
    spec = get_spec(cfg.model.name, **{**cfg.model.overrides, **overrides, "pretrained": None})
    with warnings.catch_warnings():  # the random init warned about is overwritten below
        warnings.filterwarnings("ignore", message=".*RANDOMLY INITIALISED.*")
        model = build_from_spec(spec, num_classes or info(cfg.data.dataset).num_classes)
    converted, report = convert_for_model(source, model, spec, authors_branch(config_name))
    index = their_channels(cfg.data.dataset, class_order)
    if index is not None:
        reading = class_order or next(iter(ORDERS[cfg.data.dataset]))
        converted = reorder_classes(converted, index, report, f"their {cfg.data.dataset} label ids read as "
                                    f"{reading!r}: class channels reordered to ours")
    load_converted(model, converted, report)
    report.notes.insert(0, f"loaded as {config_name} (model {cfg.model.name})")
    return model.eval(), report
