"""Refusals decided before training starts: whatever the config and the files already say is wrong
is one line before the first iteration (before the run folder, the data and the model are made),
not an error after hours of training.

:func:`check_before_training` (called by :func:`pna.engine.train.train`, and by the notebooks'
``run_rows`` for every row before the first one trains) checks:

* the config's values (:func:`pna.configs.schema.validate`: ``train.iters >= 1``, batch sizes,
  intervals, ``optim.lr > 0`` ...), its model name and overrides, its weight-decay rule, and the
  batch split over the processes (:func:`pna.engine.batch_split.split_for`);
* the weights file the config names (``model.overrides.pretrained``): there, a file, readable, not empty
  (unless a finished run is reused: it reads none);
* the dataset roots: one dataset's folder given as another's, or options it does not take
  (:mod:`pna.data.roots`);
* the run folder: ``--out`` that is a file; ``--resume`` of a folder that does not exist;
* the results JSON: one of another config where this run would write it (the rule of
  :func:`pna.engine.records.write_result`), or a results folder that cannot be written.

:func:`check_weights_argument` checks ``--weights`` / a notebook's ``weights`` in every profile (the
smoke profile's backbone takes none: a path that does not exist is still an error, not ignored).

Example::

    >>> from pna.configs import load_config
    >>> check_weights_argument("/nonexistent/weights.pth")
    Traceback (most recent call last):
    ...
    FileNotFoundError: weights /nonexistent/weights.pth: no such file or folder
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

from pna.configs import Config
from pna.configs.schema import validate
from pna.engine.records import check_result_free
from pna.engine.rundir import RunDir


def _readable_file(path: Path, what: str) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{what} {path}: no such file")
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder; a file was expected")
    if not os.access(path, os.R_OK):
        raise PermissionError(f"{what} {path} cannot be read (permission denied)")
    if path.stat().st_size == 0:
        raise ValueError(f"{what} {path} is empty (0 bytes): an interrupted copy or download?")


def check_weights_argument(weights) -> None:
    """``weights`` (a file, a folder of documented names, a mapping backbone -> file, or a hub name)
    names files that exist and can be read; a one-line error otherwise."""
    from pna.models.backbones.checkpoint_io import HUB_PREFIXES

    if weights is None:
        return
    if isinstance(weights, Mapping):
        for backbone, value in weights.items():
            check_weights_argument(value) if value is not None else None
        return
    if isinstance(weights, str) and weights.startswith(HUB_PREFIXES):
        return
    path = Path(weights).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"weights {path}: no such file or folder")
    if path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK):
            raise PermissionError(f"weights folder {path} cannot be read (permission denied)")
        return
    _readable_file(path, "weights file")


def check_pretrained(cfg: Config) -> None:
    """The weights file of ``model.overrides.pretrained`` exists and can be read (read: at model build)."""
    from pna.models.backbones.checkpoint_io import HUB_PREFIXES

    pretrained = cfg.model.overrides.get("pretrained")
    if isinstance(pretrained, (str, Path)) and not str(pretrained).startswith(HUB_PREFIXES):
        _readable_file(Path(pretrained).expanduser(), "model.overrides.pretrained: weights file")


def check_model_and_data(cfg: Config, world: int = 1) -> None:
    """Names and options the model, optimiser, batch split and datasets will need: errors now, not
    after the data is read."""
    from pna.data import check_root
    from pna.engine.batch_split import split_for
    from pna.engine.optim import DECAY_RULES
    from pna.models import get_spec

    get_spec(cfg.model.name, **cfg.model.overrides)
    if cfg.optim.decay_rule not in DECAY_RULES:
        raise ValueError(f"optim.decay_rule={cfg.optim.decay_rule!r}: expected one of {DECAY_RULES}")
    split_for(cfg, world)
    d = cfg.data
    check_root(d.dataset, d.root, d.options)
    check_root(d.eval_dataset or d.dataset, d.root, {**d.options, **d.eval_options})


def _writable_folder(path: Path, what: str) -> None:
    """``path`` is a folder that can be written, or can be made in its nearest existing parent."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"{what} {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PermissionError(f"{what} {path}: {existing} cannot be written (permission denied)")


def check_before_training(cfg: Config, cfg_hash: str, run: RunDir, resume: bool = False, overwrite: bool = False,
                          results_dir=None, write_results: bool = True, world: int = 1) -> None:
    """Every refusal the config and the files decide (module docstring), in one call."""
    validate(cfg)
    check_model_and_data(cfg, world)
    if overwrite or not run.done.is_file():  # a finished run to reuse reads no weights file
        check_pretrained(cfg)
    _writable_folder(run.path, "run folder")
    if resume:
        run.check_resumable()
    if write_results:
        from pna.engine.records import result_path

        path = result_path(cfg.table, cfg.row, cfg.profile, results_dir)
        _writable_folder(path.parent, "results folder")
        check_result_free(path, cfg_hash, overwrite)


def _first(items: list[str], count: int = 3) -> str:
    return ", ".join(items[:count]) + (f" ... ({len(items)})" if len(items) > count else "")


def check_weights_fit(model, state: dict, source, expected: str) -> None:
    """``state`` (a checkpoint's weights) has exactly ``model``'s keys and shapes; else a one-line
    ValueError naming ``source``, the model ``expected`` and the first keys that differ (torch's own
    error names neither the file nor the model, and spans dozens of lines)."""
    own = model.state_dict()
    if not isinstance(state, dict):
        raise ValueError(f"{source}: its 'model' entry is a {type(state).__name__}, not a dict of weights")
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shaped = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shaped:
        parts = [f"it lacks {len(missing)} of the model's weights ({_first(missing)})"] if missing else []
        parts += [f"the model lacks {len(unexpected)} of its keys ({_first(unexpected)})"] if unexpected else []
        parts += [f"{len(shaped)} of another shape, file vs model ({_first(shaped, 2)})"] if shaped else []
        raise ValueError(f"{source} holds weights of another model than {expected}, the model its config names: "
                         + "; ".join(parts))
