"""A model ready to predict: ours (``runs/<run>/final.pt``) or the authors' released file as a row.

:func:`load_model` returns a :class:`LoadedModel`: the network in eval mode on its device, the
config whose test protocol it uses (ours: the one it was trained with; the authors': the row's paper
config), the label space it predicts (classes and palette of the dataset it was trained on), and
the file's SHA-256, so that a prediction file says exactly which weights made it.

Both files are read without running code stored in them (:mod:`pna.files`, through
``pna.engine.checkpoint`` and ``pna.authors``).

Example::

    >>> import tempfile, warnings; warnings.simplefilter("ignore")
    >>> from pna.configs import load_config
    >>> from pna.models import create_model
    >>> cfg = load_config("voc/fcn_r50_os32_pna", "smoke")
    >>> net = create_model(cfg.model.name, 7, **cfg.model.overrides)
    >>> path = Path(tempfile.mkdtemp()) / "final.pt"
    >>> torch.save({"model": net.state_dict(), "config": cfg.to_dict()}, path)
    >>> loaded = load_model(path, device="cpu")
    >>> loaded.row, loaded.kind, loaded.dataset.name, loaded.stage_names[-1]
    ('voc/fcn_r50_os32_pna', 'ours', 'synthetic', 'P4')
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from pna.configs import Config
from pna.data.catalog import DatasetInfo

HASH_CHUNK = 1 << 20  # bytes read at a time while hashing a checkpoint


@dataclass
class LoadedModel:
    """A segmentor with what predicting needs to know about it."""

    net: nn.Module                 # eval mode, on ``device``
    config: Config                 # its test protocol (data.eval_*, eval.*) and row name
    dataset: DatasetInfo           # the label space it predicts: classes, palette, ignore index
    source: str                    # the file it came from
    kind: str                      # "ours" | "authors"
    sha256: str
    device: torch.device
    notes: list[str] = field(default_factory=list)  # the authors' conversion summary

    @property
    def row(self) -> str:
        return self.config.name

    @property
    def stage_names(self) -> list[str]:
        return list(self.net.stage_names)

    def describe(self) -> dict:
        """What ``predictions.json`` records about the model."""
        return {"row": self.row, "profile": self.config.profile, "model": self.config.model.name, "kind": self.kind,
                "checkpoint": self.source, "sha256": self.sha256, "dataset": self.dataset.name,
                "classes": list(self.dataset.classes), "stages": self.stage_names, "device": str(self.device)}


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def pick_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"``: CUDA when available, else the CPU; ``"cuda"`` without a GPU is an error."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} asked for, but CUDA is not available (use --device cpu)")
    return device


def _ours(path: Path) -> tuple[nn.Module, Config, list[str]]:
    from pna.configs import config_from_dict
    from pna.engine.build import model_from_checkpoint
    from pna.engine.checkpoint import CheckpointError, load_checkpoint

    try:
        checkpoint = load_checkpoint(path)
    except CheckpointError as err:
        if "not a pna training checkpoint" in str(err):
            raise ValueError(f"{path} is not a checkpoint written by `pna train` (no 'model' and 'config'); if it is "
                             "a model the authors released, name its row: --config NAME (row=NAME)") from err
        raise
    return model_from_checkpoint(checkpoint, path), config_from_dict(checkpoint["config"]), []


def _authors(path: Path, row: str) -> tuple[nn.Module, Config, list[str]]:
    from pna.authors import load_authors_model
    from pna.configs import list_configs, load_config

    if row not in list_configs():
        from pna.errors import unknown_name_error
        raise unknown_name_error("row", row, list_configs(), "pna.configs.list_configs()")
    net, report = load_authors_model(path, row)
    return net, load_config(row, "paper"), [report.summary()]


def load_model(source: str | Path, row: str | None = None, device: str | torch.device = "auto") -> LoadedModel:
    """The model in ``source``: a checkpoint of ours (``row=None``; its config travels with it) or,
    with ``row`` (a config name such as ``"cityscapes/fpn_r52_pna"``), a file the authors released,
    loaded into that row's paper-profile model. Eval mode, on ``device``."""
    path = Path(source).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    with warnings.catch_warnings():  # the random init a build warns about is overwritten by the file
        warnings.filterwarnings("ignore", message=".*RANDOMLY INITIALISED.*")
        net, cfg, notes = _ours(path) if row is None else _authors(path, row)
    target = pick_device(device)
    from pna.data.catalog import info

    return LoadedModel(net=net.to(target).eval(), config=cfg, dataset=info(cfg.data.dataset), source=str(path),
                       kind="ours" if row is None else "authors", sha256=file_sha256(path), device=target,
                       notes=notes)
