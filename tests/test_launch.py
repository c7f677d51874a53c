"""A row on several processes through torchrun (pna.engine.launch), from run_rows as a notebook calls it."""
import json
from pathlib import Path

import pytest
import torch

from pna.analysis.experiments import run_rows
from pna.configs import config_hash, load_config
from pna.engine import launch as launch_module
from pna.engine.launch import Processes, launch, resolve_processes, set_arguments, train_command

ROW = "voc/fcn_r50_os32_pna"


def tiny(cache: Path, *extra: str) -> list[str]:
    return [f"data.root={str(cache)!r}", "data.options={'num_train': 16, 'num_val': 4, 'size': 32, 'seed': 0}",
            "data.crop=(32, 32)", "train.iters=4", "train.batch_size=4", "train.checkpoint_interval=0",
            "train.log_interval=1", "train.eval_interval=0", "eval.batch_size=2",
            "model.overrides.embed_dims=(32, 32, 32, 32)", "model.overrides.head_channels=16",
            "model.overrides.aux_channels=16", "model.overrides.window_size=3", *extra]


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PNA_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("PNA_RESULTS_DIR", str(tmp_path / "results"))
    return tmp_path


def test_which_processes_a_row_gets(monkeypatch):
    monkeypatch.setattr(launch_module, "visible_gpus", lambda: 4)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_processes(None, device="cuda", profile="paper").gpus == 4    # paper: every visible GPU
    assert resolve_processes(None, device="auto", profile="smoke").gpus == 1    # smoke: one process
    assert resolve_processes(2, device="cuda").world == 2
    assert resolve_processes(4, nodes=2, rdzv_endpoint="node1:29400", device="cuda").world == 8
    with pytest.raises(ValueError, match=r"^gpus=8: only 4 GPU\(s\) visible on this machine"):
        resolve_processes(8, device="cuda")
    with pytest.raises(ValueError, match="^nodes=2: a multi-node run needs rdzv_endpoint='HOST:PORT'"):
        resolve_processes(4, nodes=2, device="cuda")
    with pytest.raises(ValueError, match="^gpus must be None"):
        resolve_processes(0, device="cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_processes(None, device="auto", profile="paper").gpus == 1  # no CUDA: one process
    with pytest.raises(ValueError, match="^gpus=64 on device='cpu' means 64 gloo processes, more than the"):
        resolve_processes(64, device="cpu")


def test_the_config_travels_to_the_processes_exactly(tmp_path):
    cfg = load_config("cityscapes/deeplabv3_r52_os16_pna", "paper", [
        f"data.root={str(tmp_path / 'city scapes')!r}", "model.overrides.pretrained='/w/R-52.pkl'", "train.micro_batch=2",
        "optim.lr=3.3e-05", "model.allow_random_init=True", "data.options={'x': (1, 2)}"])
    pairs = set_arguments(cfg)
    assert load_config(cfg.name, cfg.profile, pairs).to_dict() == cfg.to_dict()
    assert "optim.lr=3.3e-05" in pairs and all(not p.startswith("optim.betas") for p in pairs)  # only what differs
    procs = Processes(gpus=4, nodes=2, rdzv_endpoint="node1:29400", cuda=True)
    command = train_command(cfg, procs, tmp_path / "run", None)
    assert command[1:8] == ["-m", "torch.distributed.run", "--nproc-per-node=4", "--nnodes=2", "--rdzv-backend=c10d",
                            "--rdzv-endpoint=node1:29400", f"--rdzv-id={config_hash(cfg)[:10]}"]
    assert command[command.index("-m", 2):][:3] == ["-m", "pna", "train"]
    assert "--standalone" in train_command(cfg, Processes(gpus=2), tmp_path / "run", None)
    assert train_command(cfg, Processes(), tmp_path / "run", None)[1:4] == ["-m", "pna", "train"]


@pytest.mark.slow
def test_run_rows_trains_a_row_on_two_gloo_processes_and_reads_its_result_back(isolated, capsys):
    runs = run_rows("table1", ["fcn_r50_os32_pna"], device="cpu", gpus=2, overrides=tiny(isolated / "synthetic"),
                    out_dir=str(isolated / "out"))
    run = runs["fcn_r50_os32_pna"]
    saved = json.loads((isolated / "out" / "table1" / "fcn_r50_os32_pna.smoke.json").read_text())
    assert run.result_path == isolated / "out" / "table1" / "fcn_r50_os32_pna.smoke.json"
    assert saved["world_size"] == 2 and saved["batch_split"]["processes"] == 2 and saved["batch_per_process"] == 2
    assert run.metrics == saved["metrics"] and not run.reused
    out = capsys.readouterr().out
    assert "through torchrun" in out
    progress = [x for x in out.splitlines() if x.startswith("fcn_r50_os32_pna: ")]
    assert [x.split(" ")[1] for x in progress] == ["1/4", "2/4", "3/4", "4/4"]  # streamed from rank 0, one per step
    again = run_rows("table1", ["fcn_r50_os32_pna"], device="cpu", gpus=2, overrides=tiny(isolated / "synthetic"),
                     out_dir=str(isolated / "out"))
    assert again["fcn_r50_os32_pna"].reused  # finished: loaded here, not launched again


@pytest.mark.slow
def test_a_failing_rank_fails_the_call_with_its_last_error_line(isolated):
    # a micro-batch that does not divide the share: each rank refuses it when it starts
    cfg = load_config(ROW, "smoke", tiny(isolated / "synthetic", "train.micro_batch=3", "train.device='cpu'"))
    with pytest.raises(RuntimeError, match=r"failed with exit status 1 on rank \d .*train.micro_batch 3: 2 "
                                           r"process\(es\) x micro-batch x accumulation must equal"):
        launch(cfg, resolve_processes(2, device="cpu"))
    assert not (isolated / "results").exists() and not list((isolated / "runs").glob("*/done.json"))


def test_run_rows_checks_the_split_before_anything_trains(isolated):
    with pytest.raises(ValueError, match=r"^train.micro_batch 3: 1 process\(es\)"):
        run_rows("table1", ["fcn_r50_os32", "fcn_r50_os32_pna"], device="cpu", micro_batch=3)
    assert not (isolated / "runs").exists()
