"""Training engine: end to end on a tiny synthetic set, kill-and-resume equality, run-dir safety."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from pna.engine.checkpoint import load_checkpoint
from pna.configs import config_hash, load_config
from pna.cli import dispatch
from pna.engine.evaluate import predict_stage_logits
from pna.engine.train import train

ROOT = Path(__file__).resolve().parents[1]


def tiny_overrides(cache: Path, iters: int = 12) -> list[str]:
    """A model and data set small enough for a few seconds of CPU training."""
    return [
        f"data.root={cache}", "data.options={'num_train': 16, 'num_val': 4, 'size': 32, 'seed': 0}",
        "data.crop=(32, 32)", "data.scale_range=(0.75, 1.25)", "data.photometric=False",
        f"train.iters={iters}", "train.batch_size=4", "train.checkpoint_interval=3", "train.log_interval=1",
        "train.eval_interval=6", "eval.batch_size=4",
        "model.overrides.embed_dims=(32, 32, 32, 32)", "model.overrides.head_channels=16",
        "model.overrides.aux_channels=16", "model.overrides.window_size=3",
    ]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture
def isolated(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("PNA_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("PNA_RESULTS_DIR", str(tmp_path / "results"))
    return tmp_path


def _cli(args: list[str], tmp: Path) -> subprocess.Popen:
    env = {**os.environ, "PNA_RUNS_DIR": str(tmp / "runs"), "PNA_RESULTS_DIR": str(tmp / "results"),
           "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-m", "pna", "train", *args, "--no-progress"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_train_end_to_end_then_reuse_and_refuse_overwrite(cache, isolated):
    cfg = load_config("voc/fcn_r50_os32_pna", "smoke", tiny_overrides(cache, iters=4))
    result = train(cfg, progress=False)
    assert not result.reused and set(result.metrics["stages"]) == {"P0", "P1", "P2", "P3", "P4"}
    assert result.run_dir.name == f"fcn_r50_os32_pna-smoke-{config_hash(cfg)[:10]}"
    assert (result.run_dir / "final.pt").is_file() and not (result.run_dir / "last.pt").exists()
    log = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text().splitlines()]
    assert [e["iter"] for e in log if e["type"] == "train"] == [1, 2, 3, 4]
    assert log[-1]["type"] == "eval" and set(log[-1]["mIoU"]) == set(result.metrics["stages"])
    saved = json.loads(result.result_path.read_text())
    assert result.result_path == isolated / "results" / "table1" / "fcn_r50_os32_pna.smoke.json"
    assert saved["config_hash"] == config_hash(cfg) and saved["metrics"] == result.metrics
    # every stage carries the boundary metrics next to its mIoU
    for stage in saved["metrics"]["stages"].values():
        assert 0 <= stage["boundary_iou"]["mean"] <= 1 and 0 <= stage["boundary_f"]["mean"] <= 1
        assert set(stage["trimap_miou"]) == {"1", "2", "4", "8", "16", "32"}

    # the same config again: the finished run is loaded, not retrained
    stamp = (result.run_dir / "final.pt").stat().st_mtime_ns
    again = train(cfg, progress=False)
    assert again.reused and again.metrics == result.metrics
    assert (result.run_dir / "final.pt").stat().st_mtime_ns == stamp
    # never replaced without overwrite: same config without reuse, or another config in that folder
    with pytest.raises(FileExistsError, match="finished run"):
        train(cfg, reuse=False, progress=False)
    other = load_config("voc/fcn_r50_os32_pna", "smoke", tiny_overrides(cache, iters=3))
    with pytest.raises(FileExistsError, match="another config"):
        train(other, out_dir=result.run_dir, progress=False)
    # a results JSON of another config is not replaced either
    with pytest.raises(FileExistsError, match="another config"):
        train(other, progress=False)
    assert (result.run_dir / "final.pt").stat().st_mtime_ns == stamp
    redone = train(other, out_dir=result.run_dir, overwrite=True, progress=False)
    assert not redone.reused and redone.record["iterations"] == 3


def test_a_run_evaluated_before_the_boundary_metrics_gains_them_when_reused(cache, isolated):
    cfg = load_config("voc/fcn_r50_os32_pna", "smoke", tiny_overrides(cache, iters=2))
    result = train(cfg, progress=False)
    done = result.run_dir / "done.json"
    record = json.loads(done.read_text())
    for stage in record["metrics"]["stages"].values():  # as a run finished before they existed
        for key in ("boundary_iou", "boundary_f", "trimap_miou"):
            del stage[key]
    done.write_text(json.dumps(record))
    again = train(cfg, progress=False)
    assert again.reused and again.metrics == result.metrics  # the same model scored again: the same numbers
    assert json.loads(done.read_text())["metrics"] == result.metrics
    assert json.loads(again.result_path.read_text())["metrics"]["stages"]["P4"]["boundary_iou"] == \
        result.metrics["stages"]["P4"]["boundary_iou"]


def test_evaluate_cli_rebuilds_the_model_from_the_checkpoint(cache, isolated, capsys):
    cfg = load_config("voc/fcn_r50_os32", "smoke", tiny_overrides(cache, iters=2))
    result = train(cfg, progress=False)
    out = isolated / "eval.json"
    dispatch(["evaluate", "--checkpoint", str(result.checkpoint), "--mode", "slide", "--set", "eval.crop=(24, 24)",
                   "eval.stride=(16, 16)", "--output", str(out)])
    data = json.loads(out.read_text())
    assert data["mode"] == "slide" and data["num_images"] == 4 and set(data["stages"]) == {"P0"}
    printed = capsys.readouterr().out
    assert "P0: mIoU" in printed and "Boundary IoU" in printed and "trimap mIoU 1px" in printed
    assert 0 <= data["stages"]["P0"]["boundary_iou"]["mean"] <= 1
    with pytest.raises(FileNotFoundError):
        dispatch(["evaluate", "--checkpoint", str(isolated / "missing.pt")])


def test_slide_inference_equals_whole_when_one_window_covers_the_image():
    torch.manual_seed(0)

    class Conv(torch.nn.Module):
        stage_names = ["P0", "P1"]

        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Conv2d(3, 4, 5, padding=2, stride=2)

        def forward(self, x, return_all=False):
            return {"P0": self.b(x), "P1": self.a(x)}

    model, images = Conv(), torch.randn(2, 3, 20, 28)
    whole = predict_stage_logits(model, images, "whole")
    padded = predict_stage_logits(model, images, "slide", crop=(32, 32), stride=(16, 16))  # image padded to 32x32
    # the padding changes what the border pixels' convolutions see, so compare the interior
    assert torch.allclose(whole["P1"][..., 1:-1, 1:-1], padded["P1"][..., 1:-1, 1:-1], atol=1e-6)
    # overlapping windows of a pointwise model average to the whole-image result exactly
    pointwise = torch.nn.Conv2d(3, 4, 1)
    pointwise.stage_names = ["P0"]
    pointwise_all = lambda x, return_all=False: {"P0": pointwise(x)}  # noqa: E731
    pointwise_all.stage_names = ["P0"]
    slid = predict_stage_logits(pointwise_all, images, "slide", crop=(12, 12), stride=(5, 7), stages=["P0"])
    assert torch.allclose(slid["P0"], pointwise(images), atol=1e-6)
    with pytest.raises(ValueError, match="mode"):
        predict_stage_logits(model, images, "tiles")


def _params(checkpoint: Path) -> dict:
    return load_checkpoint(checkpoint)["model"]


def test_killed_and_resumed_run_ends_like_an_uninterrupted_one(cache, tmp_path):
    args = ["--config", "voc/fcn_r50_os32_pna", "--set", *tiny_overrides(cache, iters=12)]
    # Build the synthetic cache first, so that both runs start from the same files.
    load_config("voc/fcn_r50_os32_pna", "smoke", tiny_overrides(cache))
    from pna.engine.build import build_train_set
    build_train_set(load_config("voc/fcn_r50_os32_pna", "smoke", tiny_overrides(cache)))

    whole_dir, killed_dir = tmp_path / "whole", tmp_path / "killed"
    uninterrupted = _cli(args + ["--out", str(whole_dir)], tmp_path / "a")
    victim = _cli(args + ["--out", str(killed_dir)], tmp_path / "b")
    deadline = time.time() + 240
    while not (killed_dir / "last.pt").exists():
        assert victim.poll() is None, f"run ended before its first checkpoint:\n{victim.stdout.read()}"
        assert time.time() < deadline, "no checkpoint within 240 s"
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert victim.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(killed_dir / "last.pt")["iteration"]
    assert 3 <= killed_at < 12 and not (killed_dir / "final.pt").exists()

    # without --resume (or reuse) the interrupted run is not thrown away
    cfg = load_config("voc/fcn_r50_os32_pna", "smoke", tiny_overrides(cache, iters=12))
    with pytest.raises(FileExistsError, match="resume"):
        train(cfg, out_dir=killed_dir, reuse=False, progress=False)
    resumed = _cli(args + ["--out", str(killed_dir), "--resume"], tmp_path / "b")
    assert resumed.wait(timeout=600) == 0, resumed.stdout.read()
    assert uninterrupted.wait(timeout=600) == 0, uninterrupted.stdout.read()

    a, b = _params(whole_dir / "final.pt"), _params(killed_dir / "final.pt")
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), f"{name} differs after kill-and-resume (killed at {killed_at})"
    done_a = json.loads((whole_dir / "done.json").read_text())
    done_b = json.loads((killed_dir / "done.json").read_text())
    assert done_a["metrics"] == done_b["metrics"]
    # the resumed run's log continues the interrupted one: every iteration logged, some twice
    iters = [json.loads(line)["iter"] for line in (killed_dir / "log.jsonl").read_text().splitlines()]
    assert set(range(1, 13)) <= set(iters)


def test_rows_that_train_the_same_thing_share_one_run(cache, isolated):
    # Table 5's and Table 6's smoke FPN + PNA differ only in their labels.
    overrides = tiny_overrides(cache, iters=2)
    first = train(load_config("deepglobe/fpn_r52_pna", "smoke", overrides), progress=False)
    second = train(load_config("trans10k/fpn_r52_pna", "smoke", overrides), progress=False)
    assert not first.reused and second.reused and second.run_dir == first.run_dir
    assert second.metrics == first.metrics
    written = json.loads(second.result_path.read_text())
    assert second.result_path.parent.name == "table6" and written["config"]["table"] == "table6"
    assert json.loads(first.result_path.read_text())["config"]["table"] == "table5"

    # Table 2's L=9 row is Table 1's NAM row under another name.
    nam = train(load_config("voc/fcn_r50_os32_pna_nam", "smoke", overrides), progress=False)
    w9 = train(load_config("voc/fcn_r50_os32_pna_nam_w9", "smoke", overrides), progress=False)
    assert w9.reused and w9.run_dir == nam.run_dir and w9.result_path.parent.name == "table2"


def test_every_set_option_counts_and_an_unknown_key_names_the_valid_ones(cache, isolated, capsys):
    """``--set a=1 --set b=2`` kept only the last pair once (argparse nargs='*'): 120 iterations were
    trained where 2 were asked for."""
    overrides = tiny_overrides(cache, iters=5)
    args = [a for pair in zip(["--set"] * len(overrides), overrides) for a in pair]
    assert dispatch(["train", "--config", "voc/fcn_r50_os32", *args, "--set", "train.iters=2",
                     "--set", "train.batch_size=2", "--no-progress"]) == 0
    record = json.loads((isolated / "results" / "table1" / "fcn_r50_os32.smoke.json").read_text())
    assert record["iterations"] == 2 and record["effective_batch"] == 2
    assert record["config"]["data"]["crop"] == [32, 32]  # the first --set counted too
    with pytest.raises(ValueError, match=r"unknown key 'iterz' in train; expected one of \[.*'iters'"):
        dispatch(["train", "--config", "voc/fcn_r50_os32", "--set", "train.iterz=2"])


def test_evaluate_never_reads_a_dataset_folder_as_the_synthetic_set(cache, isolated):
    """A smoke checkpoint evaluated with --root of a real dataset folder generated the synthetic set
    inside that folder and reported it as the evaluation; now it is a one-line error naming both,
    and nothing is written there."""
    cfg = load_config("voc/fcn_r50_os32", "smoke", tiny_overrides(cache, iters=1))
    result = train(cfg, progress=False)
    voc = isolated / "VOC2012"
    (voc / "JPEGImages").mkdir(parents=True)
    before = sorted(p.name for p in voc.rglob("*"))
    with pytest.raises(ValueError, match=r"synthetic set.*--root .*VOC2012.*--dataset"):
        dispatch(["evaluate", "--checkpoint", str(result.checkpoint), "--root", str(voc)])
    assert sorted(p.name for p in voc.rglob("*")) == before
    # the data layer refuses too, whoever calls it
    from pna.data import build_dataset
    with pytest.raises(ValueError, match=r"VOC2012 holds a PASCAL VOC folder \(JPEGImages\), but the dataset is "
                                         "'synthetic'"):
        build_dataset("synthetic", voc, "val", num_train=2, num_val=1, size=32)
    (voc / "other.txt").touch()
    (voc / "JPEGImages").rmdir()  # a folder of no known layout: the synthetic generator still writes nothing there
    with pytest.raises(FileExistsError, match="refusing to generate the synthetic set inside"):
        build_dataset("synthetic", voc, "val", num_train=2, num_val=1, size=32)
    before = sorted(p.name for p in voc.rglob("*"))
    assert sorted(p.name for p in voc.rglob("*")) == before


def test_every_evaluation_logs_miou_and_boundary_iou_of_every_stage(cache, isolated):
    """Each evaluation (every eval_interval, and the final one) logs mIoU and Boundary IoU per stage
    (issue 32: both in TensorBoard at each evaluation; the boundary metrics add 5-14 % to an
    evaluation); the final entry holds the numbers of the results JSON."""
    cfg = load_config("voc/fcn_r50_os32_pna", "smoke", tiny_overrides(cache, iters=12))  # eval_interval 6
    result = train(cfg, progress=False)
    log = [json.loads(line) for line in (result.run_dir / "log.jsonl").read_text().splitlines()]
    evals = [e for e in log if e["type"] == "eval"]
    assert [e["iter"] for e in evals] == [6, 12]
    assert all(set(e["mIoU"]) == set(e["boundary_iou"]) == {"P0", "P1", "P2", "P3", "P4"} for e in evals)
    final = result.metrics["stages"]
    assert evals[-1]["mIoU"] == {s: final[s]["mIoU"] for s in final}
    assert evals[-1]["boundary_iou"] == {s: final[s]["boundary_iou"]["mean"] for s in final}
