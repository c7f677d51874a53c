"""Configs by name: one per (paper-table row, profile).

Profiles:

* ``paper``: the authors' per-row settings (:mod:`pna.configs.authors`, ``docs/authors_settings.md``): the
  row's code base (MMSeg or Detectron2), crop, resize, iterations, batch 16, AdamW, warmup, poly,
  clipping, hard-pixel mining, test resize; ``results/fidelity.md`` measures them beside the audit.
* ``smoke``: the same row on the built-in synthetic data with a small backbone
  (:mod:`pna.configs.smoke`); well under a minute per model on a 2-core CPU, so that every notebook
  runs anywhere.

Besides the paper's rows, the refiners that train (SegFix per dataset, with its own authors'
recipe: :mod:`pna.configs.refiners`) are configs too (table ``refiners``).

Example::

    >>> from pna.configs import load_config, list_configs
    >>> "voc/fcn_r50_os32_pna" in list_configs()
    True
    >>> cfg = load_config("voc/fcn_r50_os32_pna", profile="paper", overrides=["optim.lr=2e-4"])
    >>> cfg.data.crop, cfg.train.iters, cfg.optim.lr
    ((512, 512), 20000, 0.0002)
"""
from __future__ import annotations

from pna.configs.paper import paper_config
from pna.configs.refiners import REFINER_ROWS, refiner_config
from pna.configs.smoke import smoke_config
from pna.configs.rows import PAPER_DATA, ROWS, Row
from pna.configs.overrides import apply_overrides, config_from_dict
from pna.configs.schema import Config, DataConfig, EvalConfig, ModelConfig, OptimConfig, TrainConfig, config_hash

PROFILES = ("smoke", "paper")

__all__ = [
    "Config", "DataConfig", "ModelConfig", "OptimConfig", "TrainConfig", "EvalConfig",
    "load_config", "list_configs", "apply_overrides", "config_hash", "config_from_dict", "PROFILES",
]


def list_configs(table: str | None = None) -> list[str]:
    """Config names (``"<dataset>/<row>"``), optionally only those of one table (``"table1"``,
    ``"refiners"``): the paper's rows, then the refiners'."""
    rows = {**ROWS, **REFINER_ROWS}
    return [name for name, row in rows.items() if table is None or row.table == table]


def load_config(name: str, profile: str = "smoke",
                overrides: dict | list[str] | None = None) -> Config:
    """The config of row `name` (see :func:`list_configs`) at `profile`, with overrides applied."""
    if name not in ROWS and name not in REFINER_ROWS:
        from pna.errors import unknown_name_error
        raise unknown_name_error("config", name, list_configs(), "pna.configs.list_configs()")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    if name in REFINER_ROWS:
        cfg = refiner_config(REFINER_ROWS[name], profile)
    else:
        cfg = paper_config(ROWS[name]) if profile == "paper" else smoke_config(ROWS[name])
    return apply_overrides(cfg, overrides)
