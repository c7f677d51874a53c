"""The smoke profile of a row: the row's model on the built-in synthetic set, small enough to train
on a 2-core CPU in well under a minute (every notebook runs anywhere; CI and nbval run this).

256 x 256 synthetic images with thin parts (:mod:`pna.data.synthetic`), a half-width ResNet-10,
128 x 128 crops, batch 4, AdamW lr 3e-3, 120 iterations, no rescaling (the objects have one scale).
The numbers show that the machinery works and that refinement helps on data built for it; they are
not comparable with the paper's.

Example::

    >>> from pna.configs.rows import ROWS
    >>> cfg = smoke_config(ROWS["voc/fcn_r50_os32_pna"])
    >>> cfg.data.dataset, cfg.model.overrides["backbone"], cfg.train.iters
    ('synthetic', 'resnet10c_half', 120)
"""
from __future__ import annotations

from pna.configs.rows import Row
from pna.configs.schema import Config, DataConfig, EvalConfig, ModelConfig, OptimConfig, TrainConfig

# The smoke backbone and refinement widths: small enough for ~20-60 s of CPU training per model.
SMOKE_MODEL = {"backbone": "resnet10c_half", "embed_dims": (64, 64, 32, 32), "head_channels": 64,
               "aux_channels": 64, "pretrained": None}
# 256 x 256 images (the stride-4 map of the walkthrough is 64 x 64), trained on 128 x 128 crops: a
# stride-32 map of 4 x 4 in training (2 x 2 crops left P1 below P0 on the whole 8 x 8 test maps).
SMOKE_SYNTHETIC = {"num_train": 256, "num_val": 32, "size": 256, "seed": 0}
SMOKE_CROP = (128, 128)
# The FPN neck's width (256 in the paper profile) would cost the FPN rows twice the FCN rows' time.
SMOKE_FPN_KWARGS = {"fpn_channels": 64}
# PointRend's point head at MMSeg's width (256, over 2048 points per image) cost more than the
# whole smoke network: 157 ms per step against 74 ms for the FPN row alone (cityscapes/fpn_r103,
# 2 cores). As narrow as the head, it costs what the PNA stages cost beside their smaller model
# (docs/refiners.md, "PointRend").
SMOKE_POINT_HEAD_CHANNELS = SMOKE_MODEL["head_channels"]
# The smoke recipe's schedule: tuned on the synthetic set (issue-10 notes: 120 iterations reach the
# stride-4 oracle's neighbourhood for the PNA rows in 15-35 s each on 2 cores).
SMOKE_ITERS, SMOKE_BATCH, SMOKE_LR, SMOKE_WARMUP = 120, 4, 3e-3, 20


def smoke_config(row: Row) -> Config:
    """The smoke-profile config of ``row``."""
    overrides = {**SMOKE_MODEL, **row.overrides}
    if row.model.startswith("fpn_"):  # the semantic FPN rows (zoo names): a neck as narrow as the head
        from pna.models import get_spec

        # added to the head arguments the row's model has (the Detectron2 FPN's GroupNorm, no dropout),
        # not in their place: head_kwargs given as an override replace the spec's whole
        spec = get_spec(row.model, **row.overrides)
        overrides["head_kwargs"] = {**spec.head_kwargs, **SMOKE_FPN_KWARGS, **row.overrides.get("head_kwargs", {})}
    if row.model.endswith("_pointrend"):
        overrides.setdefault("point_head_channels", SMOKE_POINT_HEAD_CHANNELS)
    return Config(
        name=row.config_name, table=row.table, row=row.name, profile="smoke",
        data=DataConfig(dataset="synthetic", root=None, crop=SMOKE_CROP, scale_range=(1.0, 1.0),
                        flip=True, photometric=False, eval_short_side=None,
                        options=dict(SMOKE_SYNTHETIC)),
        model=ModelConfig(name=row.model, overrides=overrides, loss={}),
        optim=OptimConfig(lr=SMOKE_LR, weight_decay=0.01, warmup_iters=SMOKE_WARMUP, warmup_ratio=0.01, poly_power=0.9),
        train=TrainConfig(iters=SMOKE_ITERS, batch_size=SMOKE_BATCH, eval_interval=0, checkpoint_interval=100,
                          log_interval=10, seed=0, amp=False, workers=0, syncbn=True),
        eval=EvalConfig(mode="whole", crop=SMOKE_CROP, stride=(96, 96), batch_size=16),
    )
