"""The paper profile of a row: its dataset files plus the authors' per-row settings.

Everything a paper config holds comes from :mod:`pna.configs.authors` (the authors' shipped
settings, as ``docs/authors_audit.csv`` records them; per row in ``docs/authors_settings.md``),
:data:`pna.configs.rows.PAPER_DATA` (which dataset files) and the row itself (its registry model and
overrides). The model follows the code base its backbone comes from (Detectron2's R-52 / R-103 or
MMSeg's): its initialisation, and for MMSeg's cascade the second coarse pass. ``pna fidelity``
measures what these configs build and writes it beside the audit into ``results/fidelity.md``.

Example::

    >>> cfg = paper_config(ROWS["cityscapes/fpn_r103_pna"])
    >>> cfg.optim.clip_grad, cfg.data.short_sides[:3], cfg.model.loss, cfg.data.pad
    (0.01, (512, 768, 1024), {'mean_over': 'valid'}, 'batch')
    >>> paper_config(ROWS["voc/fcn_r50_os32_pna"]).model.overrides
    {'init': 'mm', 'coarse_twice': True}
"""
from __future__ import annotations

from pna.configs.authors import AUTHORS, AuthorsSetting
from pna.configs.rows import PAPER_DATA, ROWS, Row
from pna.configs.schema import Config, DataConfig, EvalConfig, ModelConfig, OptimConfig, TrainConfig

# The audit's names for the heads with top-20% hard pixels -> the outputs of a Segmentor they train.
HARD_MINING_OUTPUTS = {"coarse": ("P0",), "pna": ("P1", "P2", "P3", "P4")}
# DeepLabCE's top_k_percent_pixels (docs/authors_audit.csv, hard_pixel_mining: main:pna/loss.py:30).
HARD_PIXEL_FRACTION = 0.2
# Backbones that only the Detectron2 code base has; every other backbone is MMSeg's.
D2_BACKBONES = ("resnet52", "resnet103")
REFINE_PNA = ("nam", "nam+sam")


def authors_setting(row: Row) -> AuthorsSetting:
    """The authors' setting a row follows (its own shipped config, or its PNA row's)."""
    return AUTHORS[row.setting]


def _loss(setting: AuthorsSetting) -> dict:
    loss: dict = {"mean_over": setting.loss_mean}
    outputs = [name for head in setting.hard_mining for name in HARD_MINING_OUTPUTS[head]]
    if outputs:  # top-k per authors' GPU batch, however many images this process holds
        loss.update(hard_pixel_fraction=HARD_PIXEL_FRACTION, hard_pixel_outputs=outputs,
                    hard_pixel_chunk=setting.batch_per_gpu)
    return loss


def _model_overrides(row: Row, s: AuthorsSetting) -> dict:
    """The row's overrides plus what the paper profile changes in its registry model: the resize
    mode, the code base's initialisation, the MMSeg cascade's second coarse pass and Detectron2's
    element-wise ASPP dropout."""
    from pna.models import get_spec

    spec = get_spec(row.model, **row.overrides)  # the model the row builds, its own overrides included
    overrides = dict(row.overrides)
    if s.resize_mode != "nearest":
        overrides["resize_mode"] = s.resize_mode
    overrides["init"] = "d2" if spec.backbone in D2_BACKBONES else "mm"
    if s.coarse_twice and spec.refine in REFINE_PNA:
        overrides["coarse_twice"] = True
    if s.dropout_kind != "channel" and spec.head == "aspp":
        overrides["head_kwargs"] = {**spec.head_kwargs, "dropout_kind": s.dropout_kind}
    return overrides


def _data(row: Row, s: AuthorsSetting) -> DataConfig:
    files = PAPER_DATA[row.dataset]
    ratio = s.train_resize == "ratio"
    return DataConfig(
        dataset=files["dataset"], eval_dataset=files.get("eval_dataset"), eval_split=files["eval_split"],
        crop=s.crop, scale_range=s.scale_range if ratio else (1.0, 1.0), scale_base=s.scale_base,
        short_sides=None if ratio else s.short_sides, max_size=s.max_size, cat_max_ratio=s.cat_max_ratio,
        flip=True, photometric=True, hue=s.hue, pad=s.pad, antialias=s.antialias, crop_tries=s.crop_tries,
        eval_short_side=s.test_short, eval_max_size=s.test_max,
        options=dict(files.get("options", {})), eval_options=dict(files.get("eval_options", {})),
    )


def paper_config(row: Row) -> Config:
    """The paper-profile config of ``row``."""
    s = authors_setting(row)
    overrides = _model_overrides(row, s)
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
        eval=EvalConfig(mode="whole", crop=s.crop, stride=tuple(c * 2 // 3 for c in s.crop),
                        authors_classes=PAPER_DATA[row.dataset].get("authors_classes")),
    )


__all__ = ["HARD_MINING_OUTPUTS", "ROWS", "authors_setting", "paper_config"]
