"""Configs by name: one per (paper-table row, profile).

Profiles:

* ``paper``: the authors' per-row settings (``pna.configs.authors``, SPEC "Per-row settings"): the
  row's code base (MMSeg or Detectron2), crop, resize, iterations, batch 16, AdamW, warmup, poly,
  clipping, hard-pixel mining, test resize; ``results/fidelity.md`` lists them beside SPEC's.
* ``smoke``: the same row on the built-in synthetic data (256 x 256 images with thin parts, see
  :mod:`pna.data.synthetic`) with a small backbone: 128 x 128 crops, batch 4, AdamW lr 3e-3, 120
  iterations, no rescaling (the objects have one scale); well under a minute per model on a
  2-core CPU, so that every notebook runs anywhere.

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
from pna.configs.rows import PAPER_DATA, ROWS, Row
from pna.configs.schema import (
    Config, DataConfig, EvalConfig, ModelConfig, OptimConfig, TrainConfig,
    apply_overrides, config_from_dict, config_hash,
)

PROFILES = ("smoke", "paper")

# The smoke backbone and refinement widths: small enough for ~20-60 s of CPU training per model.
SMOKE_MODEL = {"backbone": "resnet10c_half", "embed_dims": (64, 64, 32, 32), "head_channels": 64,
               "aux_channels": 64, "pretrained": None}
# 256 x 256 images (the stride-4 map of the walkthrough is 64 x 64), trained on 128 x 128 crops: a
# stride-32 map of 4 x 4 in training (2 x 2 crops left P1 below P0 on the whole 8 x 8 test maps).
SMOKE_SYNTHETIC = {"num_train": 256, "num_val": 32, "size": 256, "seed": 0}
SMOKE_CROP = (128, 128)
# The FPN neck's width (256 in the paper profile) would cost the FPN rows twice the FCN rows' time.
SMOKE_FPN_KWARGS = {"fpn_channels": 64}

__all__ = [
    "Config", "DataConfig", "ModelConfig", "OptimConfig", "TrainConfig", "EvalConfig",
    "load_config", "list_configs", "apply_overrides", "config_hash", "config_from_dict", "PROFILES",
]


def list_configs(table: str | None = None) -> list[str]:
    """Config names (``"<dataset>/<row>"``), optionally only those of one table (``"table1"``)."""
    return [name for name, row in ROWS.items() if table is None or row.table == table]


def _smoke(row: Row) -> Config:
    overrides = {**SMOKE_MODEL, **row.overrides}
    if row.model.startswith("fpn_"):  # the semantic FPN rows (zoo names): a neck as narrow as the head
        overrides["head_kwargs"] = {**SMOKE_FPN_KWARGS, **overrides.get("head_kwargs", {})}
    return Config(
        name=row.config_name, table=row.table, row=row.name, profile="smoke",
        data=DataConfig(dataset="synthetic", root=None, crop=SMOKE_CROP, scale_range=(1.0, 1.0),
                        flip=True, photometric=False, eval_short_side=None,
                        options=dict(SMOKE_SYNTHETIC)),
        model=ModelConfig(name=row.model, overrides=overrides, loss={}),
        optim=OptimConfig(lr=3e-3, weight_decay=0.01, warmup_iters=20, warmup_ratio=0.01, poly_power=0.9),
        train=TrainConfig(iters=120, batch_size=4, eval_interval=0, checkpoint_interval=100,
                          log_interval=10, seed=0, amp=False, workers=0, syncbn=True),
        eval=EvalConfig(mode="whole", crop=SMOKE_CROP, stride=(96, 96), batch_size=16),
    )


def load_config(name: str, profile: str = "smoke",
                overrides: dict | list[str] | None = None) -> Config:
    """The config of row `name` (see :func:`list_configs`) at `profile`, with overrides applied."""
    if name not in ROWS:
        from pna.cli import unknown_name_error
        raise unknown_name_error("config", name, ROWS, "pna.configs.list_configs()")
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    cfg = paper_config(ROWS[name]) if profile == "paper" else _smoke(ROWS[name])
    return apply_overrides(cfg, overrides)
