"""SegFix as it trains here: its published Cityscapes recipe (numbers from docs/refiners.md, i.e.
openseg.pytorch's script and config), SGD over every parameter, HRNet-W48 under the official
ImageNet names, and the heads of the refiners table."""
import warnings

import pytest
import torch

from pna.configs import config_hash, list_configs, load_config


def test_the_cityscapes_segfix_config_is_the_published_recipe():
    cfg = load_config("cityscapes/segfix_hrnet48", "paper")
    # run_h_48_d_4_segfix.sh: 80000 iterations, lr 0.04, 4 GPUs; H_SEGFIX.json: batch 16, 512 x 512 crops
    # without rescaling, SGD momentum 0.9, weight decay 5e-4, poly 0.9
    assert (cfg.train.iters, cfg.train.batch_size, cfg.data.crop, cfg.data.scale_range) == (80000, 16, (512, 512), (1.0, 1.0))
    o = cfg.optim
    assert (o.optimizer, o.lr, o.momentum, o.weight_decay, o.poly_power, o.warmup_iters) == ("sgd", 0.04, 0.9, 5e-4, 0.9, 0)
    assert o.decay_rule == "all" and cfg.data.flip and cfg.data.cat_max_ratio is None
    assert cfg.model.name == "segfix_hrnet48" and cfg.model.allow_random_init is False
    # the test: the full 1024 x 2048 image in windows of the training crop every third of it
    assert (cfg.data.eval_short_side, cfg.eval.mode, cfg.eval.crop, cfg.eval.stride) == (None, "slide", (512, 512), (170, 170))
    assert cfg.data.dataset == "cityscapes" and cfg.table == "refiners"


def test_segfix_rows_are_configs_and_the_two_smoke_profiles_share_one_run():
    assert {"cityscapes/segfix_hrnet48", "voc/segfix_hrnet48"} <= set(list_configs("refiners"))
    voc, city = (load_config(f"{d}/segfix_hrnet48", "smoke") for d in ("voc", "cityscapes"))
    assert voc.model.overrides["backbone"] == "resnet10c_half" and config_hash(voc) == config_hash(city)
    assert load_config("voc/segfix_hrnet48", "paper").data.dataset == "voc_aug"
    # an optimiser other than AdamW changes the hash; AdamW configs keep the hash they had
    assert config_hash(load_config("voc/fcn_r50_os32", "smoke", ["optim.optimizer=sgd"])) != \
        config_hash(load_config("voc/fcn_r50_os32", "smoke"))


def test_sgd_decays_every_parameter_with_rule_all():
    from pna.engine.optim import build_optimizer

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    opt = build_optimizer(model, lr=0.04, weight_decay=5e-4, decay_rule="all", optimizer="sgd", momentum=0.9)
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0.9 and not opt.defaults["nesterov"]
    assert [(len(g["params"]), g["weight_decay"]) for g in opt.param_groups] == [(4, 5e-4)]
    with pytest.raises(ValueError, match="optimizer must be one of"):
        build_optimizer(model, 0.1, 0.0, optimizer="adam")


def test_hrnet_w48_takes_the_official_imagenet_names_and_leaves_only_the_classifier_unused():
    """Our backbone's keys are a subset of the full HRNet-W48 classification model's (timm's copy of
    the official model, built on the meta device); every key left over is its classification head."""
    import timm

    from pna.models.backbones import HRNetBackbone
    from pna.models.backbones.weights import FORMATS, UNUSED_KEYS, detect_format

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ours = set(HRNetBackbone("hrnet_w48").body.state_dict())
    with torch.device("meta"):
        full = set(timm.create_model("hrnet_w48").state_dict())
    assert ours <= full
    assert {k.split(".")[0] for k in full - ours} == {"incre_modules", "downsamp_modules", "final_layer", "classifier"}
    assert all(UNUSED_KEYS.search(k) for k in full - ours)
    assert detect_format(sorted(full), "hrnet", "file") is FORMATS["hrnet"][0]
    assert [c for c in HRNetBackbone.__init__.__defaults__ if isinstance(c, str)] == ["hrnet_w48"]


def test_the_smoke_stand_ins_differ_from_the_paper_rows_only_where_stated():
    from pna.analysis.refiners import HEADS

    for head in HEADS.values():
        smoke, paper = head.configs("smoke"), head.configs("paper")
        assert smoke["segfix"] == paper["segfix"] and smoke.keys() == paper.keys()
        for role in smoke:
            a, b = load_config(smoke[role], "smoke"), load_config(paper[role], "smoke")
            # a stand-in is the same smoke model up to the registry name (R-52 for R-103, DeepGlobe's FPN)
            assert a.model.overrides == b.model.overrides and a.train == b.train and a.data == b.data, (head.key, role)


@pytest.mark.parametrize("rows, data_root, message", [
    (None, "/data/one", "give one folder each"),
    (None, {"voc": "/data/voc"}, r"no folder for dataset\(s\) \['cityscapes'\]"),
    ("cityscapes_deeplabv3", "/data/cityscapes", "SegFix starts from ImageNet weights of HRNet-W48"),
    ("ade_upernet", None, "unknown coarse head"),
])
def test_the_refiners_notebook_refuses_bad_parameters_before_training(tmp_path, monkeypatch, rows, data_root, message):
    from pna.analysis.refiners import train_inputs

    monkeypatch.setenv("PNA_RUNS_DIR", str(tmp_path / "runs"))
    with pytest.raises(ValueError, match=message):
        train_inputs(rows, "paper", data_root, "cpu", out_dir=str(tmp_path / "results"))
    assert not (tmp_path / "runs").exists() and not (tmp_path / "results").exists()


@pytest.mark.parametrize("wait", [False, True])
def test_the_refiners_notebook_passes_wait_to_the_rows_and_to_segfix(tmp_path, monkeypatch, wait):
    """Notebook 08's ``wait`` (a run another notebook or job is training: wait for it and reuse it)
    reaches run_rows for the table rows and the trainer of the SegFix network, not only one of them."""
    import pna.analysis.experiments as experiments
    import pna.engine.train as trainer
    from pna.analysis.refiners import train_inputs

    seen = {}

    def fake_rows(table, rows, *args, **kwargs):
        seen[table] = kwargs["wait"]
        return {row: None for row in rows}

    def fake_train(cfg, **kwargs):
        seen[cfg.name] = kwargs["wait"]
        return None

    monkeypatch.setattr(experiments, "run_rows", fake_rows)
    monkeypatch.setattr(trainer, "train", fake_train)
    train_inputs("voc_fcn_os32", "smoke", None, "cpu", out_dir=str(tmp_path / "results"), wait=wait)
    assert seen and set(seen.values()) == {wait}
    assert "voc/segfix_hrnet48" in seen and len(seen) >= 2, seen


def test_a_record_of_other_runs_stops_the_refiners_notebook_before_anything_trains(tmp_path, monkeypatch):
    """A head's refiners JSON scoring other runs (here: a coarse model of another config hash) is
    refused by train_inputs before any row or SegFix trains, and by compare_refiners before any
    image is scored; ``overwrite`` lets both go on. Before, the refusal came after all the training."""
    import json
    from types import SimpleNamespace

    import pna.analysis.experiments as experiments
    import pna.engine.train as trainer
    from pna.analysis.refiners import compare_refiners, train_inputs

    trained = []
    monkeypatch.setattr(experiments, "run_rows", lambda table, rows, *a, **k: trained.extend(rows) or dict.fromkeys(rows))
    monkeypatch.setattr(trainer, "train", lambda cfg, **k: trained.append(cfg.name))
    results = tmp_path / "results"
    (results / "refiners").mkdir(parents=True)
    stale = {"head": "voc_fcn_os32", "profile": "smoke",
             "rows": {role: {"config_hash": "0" * 64} for role in ("coarse", "pointrend", "pna", "segfix")}}
    (results / "refiners" / "voc_fcn_os32.smoke.json").write_text(json.dumps(stale))
    with pytest.raises(FileExistsError, match=r"voc_fcn_os32\.smoke\.json scores other runs"):
        train_inputs("voc_fcn_os32", "smoke", None, "cpu", out_dir=str(results))
    assert trained == []
    train_inputs("voc_fcn_os32", "smoke", None, "cpu", out_dir=str(results), overwrite=True)
    assert trained
    runs = {role: SimpleNamespace(config_hash="1" * 64) for role in ("coarse", "pointrend", "pna", "segfix")}
    monkeypatch.setattr("pna.analysis.refiners.evaluate_head", lambda *a, **k: pytest.fail("scored before the check"))
    with pytest.raises(FileExistsError, match="scores other runs"):
        compare_refiners({"voc_fcn_os32": runs}, "smoke", "cpu", results)
