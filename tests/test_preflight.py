"""Refusals before training (pna.engine.preflight, pna.configs.schema.validate) and errors that name
the file and the cause: each was found out late, or said nothing of where, before."""
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from pna.cli import dispatch
from pna.configs import config_hash, load_config
from pna.engine.train import train
from tiny_runs import ROW, isolated, tiny  # noqa: F401 (isolated: a fixture)



def _nothing_made(tmp: Path) -> None:
    """No run folder, no results, not even the synthetic set: refused before anything was built."""
    assert not (tmp / "runs").exists() and not (tmp / "results").exists() and not (tmp / "synthetic").exists()


def _train_args(tmp: Path, *extra: str) -> list[str]:
    return ["train", "--config", ROW, "--no-progress", "--set", *tiny(tmp / "synthetic"), *extra]


@pytest.mark.parametrize("iters", ["0", "-5"])
def test_no_iterations_is_refused_before_anything_is_built(isolated, iters):
    with pytest.raises(ValueError, match=f"^train.iters={iters}: expected a whole number >= 1"):
        dispatch(_train_args(isolated, f"train.iters={iters}"))
    cfg = load_config(ROW, "smoke", tiny(isolated / "synthetic"))
    bypassed = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, iters=int(iters)))  # no apply_overrides
    with pytest.raises(ValueError, match="train.iters"):
        train(bypassed, progress=False)
    _nothing_made(isolated)


@pytest.mark.parametrize("setting, message", [
    ("train.batch_size=0", "train.batch_size=0: expected a whole number >= 1"),
    ("train.log_interval=0", "train.log_interval=0: expected a whole number >= 1"),
    ("train.checkpoint_interval=-1", "train.checkpoint_interval=-1: expected >= 0"),
    ("train.seed=-1", "train.seed=-1: expected a whole number in 0 .. 2**31 - 1"),
    ("optim.lr=-0.001", "optim.lr=-0.001: expected a number > 0"),
    ("optim.min_lr=1.0", "optim.min_lr=1.0: expected a number in [0, optim.lr]"),
    ("optim.betas=(0.9, 1.5)", "optim.betas=(0.9, 1.5): expected two numbers in [0, 1)"),
    ("data.crop=(0, 32)", "data.crop=(0, 32): expected (height, width), each >= 1"),
    ("eval.mode='tiles'", "eval.mode='tiles': expected 'whole' or 'slide'"),
    ("train.device='gpu'", "train.device='gpu': expected auto, cpu, cuda or cuda:N"),
])
def test_a_nonsensical_number_names_the_key_and_what_is_expected(setting, message):
    with pytest.raises(ValueError) as error:
        load_config(ROW, "smoke", [setting])
    assert str(error.value).startswith(message), str(error.value)


def test_every_shipped_config_passes_the_checks():
    from pna.configs import list_configs
    from pna.configs.schema import validate

    for name in list_configs():
        for profile in ("smoke", "paper"):
            validate(load_config(name, profile))


def test_a_huge_or_deep_set_value_is_one_line_naming_the_key(isolated):
    """20,000 minus signs: MemoryError from Python's parser, naming nothing."""
    with pytest.raises(ValueError, match="^optim.lr: a value of 20001 characters; expected at most 4096$"):
        dispatch(["train", "--config", ROW, "--set", "optim.lr=" + "-" * 20000 + "1"])
    with pytest.raises(ValueError, match="^model.overrides.x: a value nested 40 levels deep"):
        dispatch(["train", "--config", ROW, "--set", "model.overrides.x=" + "[" * 40 + "]" * 40])
    with pytest.raises(ValueError, match=r"^train.iters: expected int, got '-{79}\.\.\. \(1002 characters\)$"):
        load_config(ROW, "smoke", {"train.iters": "-" * 1000})  # a long wrong value is cut in the message


def test_a_results_json_of_another_config_is_refused_before_training(isolated):
    """The conflict was reported by write_result after the whole training."""
    cfg = load_config(ROW, "smoke", tiny(isolated / "synthetic"))
    path = isolated / "results" / "table1" / "fcn_r50_os32_pna.smoke.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"config_hash": "0123456789abcdef", "metrics": {}}))
    with pytest.raises(FileExistsError, match=f"{path} holds the result of another config \\(hash 0123456789"):
        train(cfg, progress=False)
    assert not (isolated / "runs").exists() and not (isolated / "synthetic").exists()  # no checkpoint, no data
    path.write_bytes(b"\x80\x04\x95binary")  # a pickle where the JSON was: named, not 'utf-8 codec ...'
    with pytest.raises(ValueError, match=f"^results JSON {path} is not text \\(byte 0x80 at offset 0"):
        train(cfg, progress=False)


def test_missing_weights_are_refused_in_every_profile(isolated, tmp_path):
    """--weights /nonexistent was ignored in the smoke profile (its backbone takes no weights)."""
    with pytest.raises(FileNotFoundError, match="^weights /nonexistent/w.pth: no such file or folder$"):
        dispatch(_train_args(isolated) + ["--weights", "/nonexistent/w.pth"])
    from pna.analysis.experiments import run_rows
    with pytest.raises(FileNotFoundError, match="weights /nonexistent: no such file"):
        run_rows("table1", ["fcn_r50_os32_pna"], weights="/nonexistent")
    empty = tmp_path / "empty.pth"
    empty.touch()
    with pytest.raises(ValueError, match=f"weights file {empty} is empty"):
        dispatch(_train_args(isolated, f"model.overrides.pretrained={str(empty)!r}"))
    _nothing_made(isolated)


@pytest.mark.slow
def test_resume_with_nothing_to_resume_is_refused(isolated, capsys):
    """--resume --out <missing folder> trained from scratch without a word."""
    missing = isolated / "no-such-run"
    with pytest.raises(FileNotFoundError, match=f"^nothing to resume: run folder {missing} does not exist"):
        dispatch(_train_args(isolated) + ["--resume", "--out", str(missing)])
    assert not missing.exists()
    empty = isolated / "empty-run"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=f"^nothing to resume in {empty}: it holds no run"):
        dispatch(_train_args(isolated) + ["--resume", "--out", str(empty)])
    # a run of this config stopped before its first checkpoint starts again, and says so
    cfg = load_config(ROW, "smoke", tiny(isolated / "synthetic"))
    killed = isolated / "killed-early"
    killed.mkdir()
    (killed / "config.json").write_text(json.dumps({"config_hash": config_hash(cfg), "config": cfg.to_dict()}))
    assert dispatch(_train_args(isolated) + ["--resume", "--out", str(killed)]) == 0
    assert "nothing to resume in" in capsys.readouterr().out and (killed / "done.json").is_file()


def test_stop_after_zero_is_refused(isolated):
    cfg = load_config(ROW, "smoke", tiny(isolated / "synthetic"))
    with pytest.raises(ValueError, match="^stop_after=0: expected None or a whole number >= 1"):
        train(cfg, stop_after=0, progress=False)


def _fake_voc(folder: Path) -> Path:
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (folder / sub).mkdir(parents=True)
    return folder


def test_a_voc_root_in_the_smoke_profile_names_the_root_and_what_it_holds(isolated):
    """TypeError: VOCSegmentation.__init__() got an unexpected keyword argument 'num_train'."""
    voc = _fake_voc(isolated / "VOC2012")
    before = sorted(p.name for p in voc.rglob("*"))
    with pytest.raises(ValueError, match=rf"^dataset 'voc' \(root {voc}: a PASCAL VOC folder \(JPEGImages\)\) takes "
                                         r"no option\(s\) \['num_train', 'num_val', 'seed', 'size'\] \(options of "
                                         r"the 'synthetic' dataset, the smoke profile\)"):
        dispatch(_train_args(isolated, "data.dataset='voc'", f"data.root={str(voc)!r}"))
    with pytest.raises(ValueError, match=rf"^dataset root {voc} holds a PASCAL VOC folder \(JPEGImages\), but the "
                                         r"dataset is 'synthetic'"):
        dispatch(_train_args(isolated, f"data.root={str(voc)!r}"))
    with pytest.raises(ValueError, match=rf"^dataset root {voc} holds a PASCAL VOC folder \(JPEGImages\), not a "
                                         r"Cityscapes folder"):
        dispatch(_train_args(isolated, "data.dataset='cityscapes'", "data.options={}", f"data.root={str(voc)!r}"))
    assert sorted(p.name for p in voc.rglob("*")) == before and not (isolated / "runs").exists()


def test_a_binary_split_list_and_run_file_name_the_file(isolated):
    voc = _fake_voc(isolated / "VOC2012")
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_bytes(b"\x89PNG\r\n\x1a\n")
    from pna.data import build_dataset
    with pytest.raises(ValueError, match=r"^split list .*val.txt is not text \(byte 0x89 at offset 0"):
        build_dataset("voc", voc, "val")
    out = isolated / "run"
    out.mkdir()
    (out / "config.json").write_bytes(b"\x80\x02}q\x00.")
    with pytest.raises(ValueError, match=f"^run file {out / 'config.json'} is not text"):
        dispatch(_train_args(isolated) + ["--out", str(out)])


def _checkpoint(tmp: Path, row: str, weights_of: str) -> Path:
    """A pna checkpoint whose config is ``row`` and whose weights are those of ``weights_of``."""
    from pna.data import info
    from pna.models import create_model

    cfg = load_config(row, "smoke", tiny(tmp / "synthetic"))
    other = load_config(weights_of, "smoke", tiny(tmp / "synthetic"))
    model = create_model(other.model.name, info("synthetic").num_classes, **other.model.overrides)
    path = tmp / "final.pt"
    torch.save({"model": model.state_dict(), "config": cfg.to_dict(), "config_hash": config_hash(cfg)}, path)
    return path


def test_evaluate_a_checkpoint_of_another_model_names_the_file_the_models_and_the_keys(isolated):
    """'Error(s) in loading state_dict for Segmentor: ...' named neither the file nor the models."""
    path = _checkpoint(isolated, "voc/fcn_r50_os32", "voc/fcn_r50_os32_pna")
    with pytest.raises(ValueError, match=rf"^{path} holds weights of another model than fcn_r50_os32 "
                                         r"\(voc/fcn_r50_os32, smoke profile\).*: the model lacks \d+ of its keys "
                                         r"\(refine\.stages\.0\."):
        dispatch(["evaluate", "--checkpoint", str(path)])
    fitting = _checkpoint(isolated, "voc/fcn_r50_os32", "voc/fcn_r50_os32")
    with pytest.raises(ValueError, match=rf"^{fitting} holds model fcn_r50_os32 \(trained as voc/fcn_r50_os32, smoke "
                                         r"profile\), not fcn_r50_os32_pna of --config voc/fcn_r50_os32_pna"):
        dispatch(["evaluate", "--checkpoint", str(fitting), "--config", "voc/fcn_r50_os32_pna"])
    with pytest.raises(ValueError, match="^--set model.name=fcn_r50_os8: the model is rebuilt from what"):
        dispatch(["evaluate", "--checkpoint", str(fitting), "--set", "model.name=fcn_r50_os8"])
