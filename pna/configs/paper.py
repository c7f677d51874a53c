"""The paper profile of a row: its dataset files plus the authors' per-row settings.

Everything a paper config holds comes from :mod:`pna.configs.authors` (the authors' shipped
settings, SPEC "Per-row settings"), :data:`pna.configs.rows.PAPER_DATA` (which dataset files) and
the row itself (its registry model and overrides). ``scripts/fidelity_report.py`` writes the
resolved settings of every row beside the authors' into ``results/fidelity.md``.

Example::

    >>> cfg = paper_config(ROWS["cityscapes/fpn_r103_pna"])
    >>> cfg.optim.clip_grad, cfg.data.short_sides[:3], cfg.model.loss
    (0.01, (512, 768, 1024), {})
"""
from __future__ import annotations

from pna.configs.authors import AUTHORS, AuthorsSetting
from pna.configs.rows import PAPER_DATA, ROWS, Row
from pna.configs.schema import Config, DataConfig, EvalConfig, ModelConfig, OptimConfig, TrainConfig

# SPEC names for the heads with top-20% hard pixels -> the outputs of a Segmentor they train.
HARD_MINING_OUTPUTS = {"coarse": ("P0",), "pna": ("P1", "P2", "P3", "P4")}
HARD_PIXEL_FRACTION = 0.2


def authors_setting(row: Row) -> AuthorsSetting:
    """The authors' setting a row follows (its own shipped config, or its PNA row's)."""
    return AUTHORS[row.setting]


def _loss(setting: AuthorsSetting) -> dict:
    outputs = [name for head in setting.hard_mining for name in HARD_MINING_OUTPUTS[head]]
    if not outputs:
        return {}
    return {"hard_pixel_fraction": HARD_PIXEL_FRACTION, "hard_pixel_outputs": outputs}


def _data(row: Row, s: AuthorsSetting) -> DataConfig:
    files = PAPER_DATA[row.dataset]
    ratio = s.train_resize == "ratio"
    return DataConfig(
        dataset=files["dataset"], eval_dataset=files.get("eval_dataset"), eval_split=files["eval_split"],
        crop=s.crop, scale_range=s.scale_range if ratio else (1.0, 1.0), scale_base=s.scale_base,
        short_sides=None if ratio else s.short_sides, max_size=s.max_size, cat_max_ratio=s.cat_max_ratio,
        flip=True, photometric=True, eval_short_side=s.test_short, eval_max_size=s.test_max,
        options=dict(files.get("options", {})), eval_options=dict(files.get("eval_options", {})),
    )


def paper_config(row: Row) -> Config:
    """The paper-profile config of ``row``."""
    s = authors_setting(row)
    overrides = dict(row.overrides)
    if s.resize_mode != "nearest":
        overrides["resize_mode"] = s.resize_mode
    iters = s.iters
    return Config(
        name=row.config_name, table=row.table, row=row.name, profile="paper",
        data=_data(row, s),
        model=ModelConfig(name=row.model, overrides=overrides, loss=_loss(s), allow_random_init=False),
        optim=OptimConfig(lr=s.lr, weight_decay=s.weight_decay, betas=(0.9, 0.999), warmup_iters=s.warmup_iters,
                          warmup_ratio=1e-6, poly_power=s.poly_power, min_lr=0.0, clip_grad=s.clip_grad,
                          decay_rule=s.decay_rule),
        train=TrainConfig(iters=iters, batch_size=s.batch_per_gpu * s.gpus, eval_interval=iters // 10,
                          checkpoint_interval=iters // 10, amp=True),
        eval=EvalConfig(mode="whole", crop=s.crop, stride=tuple(c * 2 // 3 for c in s.crop)),
    )


__all__ = ["HARD_MINING_OUTPUTS", "ROWS", "authors_setting", "paper_config"]
