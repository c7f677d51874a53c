"""Configs: every row loads for both profiles, the paper settings, typed overrides, the hash."""
import json

import pytest

from pna.configs import (PROFILES, apply_overrides, config_from_dict, config_hash, list_configs,
                         load_config)
from pna.models import list_models


def test_every_row_loads_for_both_profiles_and_names_a_registered_model():
    names = list_configs()
    assert {"voc/fcn_r50_os32", "voc/fcn_r50_os32_pna", "voc/fcn_r50_os32_pna_nam_w5",
            "cityscapes/deeplabv3_r103_os16_pna", "trans10k/fpn_r52_pna"} <= set(names)
    tables = {load_config(n).table for n in names}
    assert tables == {f"table{i}" for i in range(1, 8)} | {"refiners"}  # the refiners that train: SegFix
    models = set(list_models())
    for name in names:
        for profile in PROFILES:
            cfg = load_config(name, profile)
            assert cfg.name == name and cfg.profile == profile
            assert cfg.model.name in models, f"{name}: model {cfg.model.name} is not registered"


def test_paper_profile_datasets_and_schedules():
    voc = load_config("voc/fcn_r50_os32_pna", "paper")
    assert (voc.data.dataset, voc.data.eval_dataset, voc.data.crop) == ("voc_aug", "voc", (512, 512))
    assert (voc.train.iters, voc.train.batch_size, voc.optim.lr, voc.optim.poly_power) == (20000, 16, 1e-4, 0.9)
    assert voc.model.overrides == {"init": "mm", "coarse_twice": True} and voc.model.allow_random_init is False
    city = load_config("cityscapes/deeplabv3_r52_os16_pna", "paper")
    assert city.data.crop == (512, 1024) and city.train.iters == 90000
    assert load_config("trans10k/fpn_r52_pna", "paper").train.iters == 8000
    assert load_config("cocostuff10k/deeplabv3_r50_os16_pna", "paper").train.iters == 40000
    assert load_config("voc/fcn_r50_os32_pna_nam_w5", "paper").model.overrides == {
        "window_size": 5, "init": "mm", "coarse_twice": True}


def test_smoke_profile_is_synthetic_and_small():
    cfg = load_config("voc/fcn_r50_os32_pna", "smoke")
    assert cfg.data.dataset == "synthetic" and cfg.data.root is None
    assert cfg.model.overrides["backbone"] == "resnet10c_half"
    assert cfg.train.iters <= 300 and cfg.train.device == "auto"


def test_overrides_parse_by_field_type():
    cfg = load_config("voc/fcn_r50_os32", "smoke", ["optim.lr=2e-4", "train.iters=7", "train.amp=false",
                                                   "data.crop=(64, 32)", "data.root=/data/voc",
                                                   "optim.clip_grad=None", "optim.clip_grad=1",
                                                   "model.overrides.window_size=5", "data.eval_short_side=None"])
    assert cfg.optim.lr == 2e-4 and cfg.train.iters == 7 and cfg.train.amp is False
    assert cfg.data.crop == (64, 32) and cfg.data.root == "/data/voc" and cfg.optim.clip_grad == 1.0
    assert cfg.model.overrides["window_size"] == 5 and cfg.data.eval_short_side is None
    # a dict of typed values (the notebooks' way)
    cfg = load_config("voc/fcn_r50_os32", "smoke", {"train.iters": 3, "data.crop": [48, 48]})
    assert cfg.train.iters == 3 and cfg.data.crop == (48, 48)


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=1", "unknown key 'lrr' in optim"),
    ("nothing.lr=1", "unknown key 'nothing'"),
    ("optim.lr=fast", "optim.lr: expected float"),
    ("train.iters=1.5", "train.iters: expected int"),
    ("train.amp=1", "train.amp: expected bool"),
    ("data.crop=(1, 2, 3)", "data.crop: expected a tuple of 2"),
    ("optim=3", "optim is a section"),
    ("optim.lr", "expected KEY=VALUE"),
])
def test_bad_overrides_raise_naming_the_key(override, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        load_config("voc/fcn_r50_os32", "smoke", [override])


def test_unknown_names_raise():
    with pytest.raises(ValueError, match="unknown config"):
        load_config("voc/nope")
    with pytest.raises(ValueError, match="unknown profile"):
        load_config("voc/fcn_r50_os32", "fast")
    with pytest.raises(ValueError, match="train.iters: expected int"):
        load_config("voc/fcn_r50_os32", "smoke", {"train.iters": "10"})


def test_hash_is_stable_survives_json_and_ignores_execution_fields():
    cfg = load_config("voc/fcn_r50_os32_pna", "smoke")
    same = config_from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert config_hash(cfg) == config_hash(same) and len(config_hash(cfg)) == 64
    assert config_hash(apply_overrides(cfg, ["train.workers=3", "train.log_interval=1"])) == config_hash(cfg)
    assert config_hash(apply_overrides(cfg, ["optim.lr=2e-3"])) != config_hash(cfg)
    assert config_hash(load_config("voc/fcn_r50_os32_pna", "paper")) != config_hash(cfg)
    with pytest.raises(ValueError, match="unknown key"):
        config_from_dict({**cfg.to_dict(), "extra": 1})


def test_paper_configs_build_the_authors_branch_models():
    from pna.models import create_model

    city = load_config("cityscapes/deeplabv3_r52_os16_pna", "paper")
    small = dict(backbone="resnet10c_half", head_channels=8, embed_dims=(32, 32, 32, 32), pretrained=None)
    model = create_model(city.model.name, 19, **{**city.model.overrides, **small})
    assert model.aux_head is None and model.refine.stages[0].query.bias is None
    voc = load_config("voc/deeplabv3_r101_os16_pna", "paper")
    model = create_model(voc.model.name, 21, **{**voc.model.overrides, **small})
    assert model.aux_head is not None and model.refine.stages[0].query.bias is not None
    # the smoke rows of two tables that train the same model stay one training
    assert config_hash(load_config("deepglobe/fpn_r52_pna", "smoke")) == config_hash(
        load_config("trans10k/fpn_r52_pna", "smoke"))


@pytest.mark.parametrize("row", ["cityscapes/fpn_r52_pna", "trans10k/fpn_r52_pointrend", "deepglobe/fpn_r52_pna"])
def test_smoke_fpn_rows_keep_the_detectron2_head_norm_and_no_dropout(row):
    """The smoke stand-in of a Detectron2 FPN row narrows the neck but keeps the head the row builds:
    GroupNorm of 32 groups in the semantic-FPN head convs and no dropout (SEM_SEG_HEAD.NORM 'GN',
    facebookresearch/detectron2@47d8ed7a1bd9:detectron2/config/defaults.py:413; docs/authors_audit.csv)."""
    from torch import nn
    from pna.configs.rows import ROWS
    from pna.configs.smoke import smoke_config
    from pna.engine.build import build_model

    cfg = smoke_config(ROWS[row])
    model = build_model(cfg, 8, "cpu")
    head = model.head
    norms = [m for m in head.modules() if isinstance(m, nn.GroupNorm)]
    assert norms and all(m.num_groups == 32 for m in norms)
    assert not [m for m in head.modules() if isinstance(m, nn.Dropout | nn.Dropout2d) and m.p > 0]
    assert cfg.model.overrides["head_kwargs"]["fpn_channels"] == 64  # the smoke neck's width
