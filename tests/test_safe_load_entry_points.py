"""Every public entry point that reads a weight or checkpoint file refuses a malicious one (the
marker its payload would write never appears; the error names the file), and our own checkpoints
are written in plain types that torch's weights-only unpickler reads (old ones, with a numpy RNG
state, still resume)."""
import pickle
import warnings
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from malicious_files import SystemPayload, assert_refused, malicious
from pna.files import TRUST_ENV, UnsafeFileError, is_trusted


@contextmanager
def _quiet():
    with warnings.catch_warnings():  # the smoke backbones' random-init warning
        warnings.simplefilter("ignore")
        yield


@pytest.mark.parametrize("fmt", ["pkl2", "pth"])
def test_backbone_weights_refuse_a_malicious_file(tmp_path, fmt):
    from pna.models import create_model
    from pna.models.backbones import build_backbone, resolve_pretrained

    path, marker = malicious(tmp_path, "R-52.pkl" if fmt == "pkl2" else "resnet18c.pth", "system", fmt)
    with pytest.raises(UnsafeFileError) as error:
        build_backbone("resnet18c", pretrained=path)
    assert_refused(error, path, marker)
    with pytest.raises(UnsafeFileError) as error:
        create_model("fcn_r50_os32", 5, backbone="resnet18c", pretrained=path)
    assert_refused(error, path, marker)
    if fmt == "pkl2":  # R-52.pkl: the documented name, picked from a folder
        with pytest.raises(UnsafeFileError) as error:
            build_backbone("resnet52", pretrained=resolve_pretrained(tmp_path, "resnet52"))
        assert_refused(error, path, marker)


def test_notebook_weights_refuse_a_malicious_file(tmp_path):
    """``weights`` as the notebooks pass it: make_config (with_weights) then the model is built."""
    from pna.analysis.experiments import make_config
    from pna.engine.build import create_model_of

    path, marker = malicious(tmp_path, "resnet50_v1c.pth", "touch", "pth")
    cfg = make_config("table1", "fcn_r50_os32", "paper", data_root=str(tmp_path), weights=str(tmp_path))
    assert cfg.model.overrides["pretrained"] == str(path)
    with pytest.raises(UnsafeFileError) as error:
        create_model_of(cfg, 21)
    assert_refused(error, path, marker)


def test_run_rows_trusts_trust_files_for_the_runs_only(tmp_path, monkeypatch):
    from pna.analysis import experiments

    monkeypatch.delenv(TRUST_ENV, raising=False)
    path, _ = malicious(tmp_path)
    seen = []
    monkeypatch.setattr(experiments, "train", lambda cfg, results_dir=None, **options:  # options: e.g. wait
                        seen.append(is_trusted(path)) or SimpleNamespace(reused=False))
    experiments.run_rows("table1", ["fcn_r50_os32"], trust_files=str(path))
    experiments.run_rows("table1", ["fcn_r50_os32"])
    assert seen == [True, False] and not is_trusted(path)


@pytest.mark.parametrize("fmt", ["pkl4", "pth"])
def test_authors_checkpoints_refuse_a_malicious_file(tmp_path, fmt):
    from pna.authors import load_authors_model

    path, marker = malicious(tmp_path, "model_final" + (".pkl" if fmt == "pkl4" else ".pth"), "open", fmt)
    with pytest.raises(UnsafeFileError) as error:
        load_authors_model(path, "voc/fcn_r50_os32_pna", backbone="resnet18c", embed_dims=(32, 32, 32, 32),
                           head_channels=16)
    assert_refused(error, path, marker)


# ---- our own checkpoints: written in plain types, read restricted ---------------------------------
@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture
def stopped_run(tmp_path, monkeypatch, synthetic):
    """A tiny smoke run stopped after 2 of 4 iterations: its config and run folder (last.pt inside)."""
    from test_train import tiny_overrides
    from pna.configs import load_config
    from pna.engine.train import train

    monkeypatch.setenv("PNA_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("PNA_RESULTS_DIR", str(tmp_path / "results"))
    cfg = load_config("voc/fcn_r50_os32_pna", "smoke", tiny_overrides(synthetic, iters=4))
    run = tmp_path / "run"
    with _quiet():
        assert not train(cfg, run, progress=False, stop_after=2).finished
    return cfg, run


def test_our_checkpoints_hold_only_plain_types(stopped_run):
    from pna.engine.train import train

    cfg, run = stopped_run
    last = torch.load(run / "last.pt", weights_only=True)  # torch's own allow-list, no numpy types
    assert isinstance(last["rng"]["numpy"][1], list) and len(last["rng"]["numpy"][1]) == 624
    with _quiet():
        result = train(cfg, run, resume=True, progress=False)
    assert result.finished and torch.load(run / "final.pt", weights_only=True)["iteration"] == 4


@pytest.mark.slow
def test_an_old_checkpoint_with_a_numpy_rng_state_resumes_identically(stopped_run, tmp_path):
    from pna.engine.train import train

    cfg, run = stopped_run
    old = tmp_path / "old"
    old.mkdir()
    for name in ("config.json", "log.jsonl"):
        (old / name).write_bytes((run / name).read_bytes())
    state = torch.load(run / "last.pt", weights_only=True)
    name, keys, *rest = state["rng"]["numpy"]
    state["rng"]["numpy"] = (name, np.asarray(keys, dtype=np.uint32), *rest)  # as written before this change
    torch.save(state, old / "last.pt")
    with pytest.raises(pickle.UnpicklingError):  # plain weights_only refuses the ndarray: the allow-list reads it
        torch.load(old / "last.pt", weights_only=True)
    with _quiet():
        new_result, old_result = (train(cfg, folder, resume=True, progress=False) for folder in (run, old))
    new_model = torch.load(run / "final.pt", weights_only=True)["model"]
    old_model = torch.load(old / "final.pt", weights_only=True)["model"]
    assert all(torch.equal(new_model[k], old_model[k]) for k in new_model)
    assert new_result.metrics == old_result.metrics


def test_resume_evaluate_and_load_run_refuse_a_malicious_checkpoint(stopped_run, tmp_path):
    from pna.analysis.experiments import load_run
    from pna.cli import dispatch
    from pna.engine.train import train

    cfg, run = stopped_run
    marker = tmp_path / "marker"
    genuine = torch.load(run / "last.pt", weights_only=True)
    torch.save({**genuine, "rng": SystemPayload(marker)}, run / "last.pt")
    with pytest.raises(UnsafeFileError) as error, _quiet():
        train(cfg, run, resume=True, progress=False)
    assert_refused(error, run / "last.pt", marker)
    (run / "last.pt").rename(run / "final.pt")
    with pytest.raises(UnsafeFileError) as error:
        dispatch(["evaluate", "--checkpoint", str(run / "final.pt")])
    assert_refused(error, run / "final.pt", marker)
    with pytest.raises(UnsafeFileError) as error:
        load_run(run, cfg)
    assert_refused(error, run / "final.pt", marker)


