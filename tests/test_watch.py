"""What a training shows while it runs (pna.engine.watch): TensorBoard event files read back with
TensorBoard's own EventAccumulator (one value per step after a failure and a resume), the failure
record, the figures of a log line, the prediction strips."""
import json
import sys
import time

import numpy as np
import pytest
import torch

from pna.configs import load_config
from pna.engine.train import train
from pna.engine.watch import RunWatch, merge_entry, prediction_strip, read_run_log
from pna.runs.index import run_info
from tiny_runs import ROW, isolated, tiny  # noqa: F401 (isolated: a fixture)


class Boom(RuntimeError):
    pass


@pytest.mark.slow
def test_a_failed_then_resumed_run_has_one_value_per_step_in_tensorboard(isolated):
    """The first process logs iterations 1-3 (to TensorBoard too) and fails after logging 3, with
    last.pt at 2; the resumed process logs 3 and 4 again. TensorBoard must hold steps 1-4 once each,
    step 3 with the resumed process's value."""
    pytest.importorskip("tensorboard", reason="the tensorboard extra is not installed (pip install 'pna[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = load_config(ROW, "smoke", tiny(isolated / "synthetic", 4) + ["train.checkpoint_interval=2"])

    def fail_at_three(entry):
        if entry.get("type") == "train" and entry["iter"] == 3:
            raise Boom("stopped on purpose after logging iteration 3")

    with pytest.raises(Boom):
        train(cfg, tensorboard=True, progress=False, on_log=fail_at_three)
    run = next((isolated / "runs").iterdir())
    failed = json.loads((run / "failed.json").read_text())
    assert failed["iter"] == 3 and failed["error"] == "Boom: stopped on purpose after logging iteration 3"
    assert run_info(run).detail == "failed after iteration 3: Boom: stopped on purpose after logging iteration 3"
    assert (run / "last.pt").is_file() and not (run / "done.json").exists()

    second_started = time.time()
    result = train(cfg, tensorboard=True, progress=False)  # reuse=True resumes the interrupted run
    assert not (run / "failed.json").exists() and run_info(run).status == "finished"
    raw = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    trained = [e for e in raw if e["type"] == "train"]
    assert [e["iter"] for e in trained] == [1, 2, 3, 3, 4]  # the log keeps both processes' lines
    events = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    for tag in ("loss/total", "loss/P0", "loss/P4", "loss/aux", "train/lr", "train/grad_norm",
                "train/images_per_s", "train/peak_memory_mb"):
        assert [s.step for s in events.Scalars(tag)] == [1, 2, 3, 4], tag
    # step 3 is the resumed process's (a CPU resume is exact, so its value equals the first one's: the time tells)
    written = {s.step: s.wall_time for s in events.Scalars("loss/total")}
    assert written[2] < second_started <= written[3]
    assert events.Scalars("loss/total")[2].value == pytest.approx(trained[3]["loss"], rel=1e-6)
    stages = result.metrics["stages"]
    for stage in ("P0", "P4"):
        assert [(s.step, s.value) for s in events.Scalars(f"mIoU/{stage}")] == \
            [(4, pytest.approx(stages[stage]["mIoU"], rel=1e-6))]
        assert events.Scalars(f"boundary_IoU/{stage}")[0].value == pytest.approx(stages[stage]["boundary_iou"]["mean"])
    assert sorted(events.Tags()["images"]) == ["predictions/val0", "predictions/val1"]  # 2 validation images
    assert [i.step for i in events.Images("predictions/val0")] == [4]


def test_without_the_tensorboard_package_training_notes_it_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # `import` then raises ImportError
    watch = RunWatch(tmp_path / "log.jsonl", torch.device("cpu"), 4, tensorboard=True)
    watch.log({"type": "eval", "iter": 1, "mIoU": {"P0": 0.5}, "seconds": 1.0})
    out = capsys.readouterr().out.strip().splitlines()
    assert watch.writer is None and len(out) == 1 and "TensorBoard is not installed" in out[0]
    assert json.loads((tmp_path / "log.jsonl").read_text())["mIoU"] == {"P0": 0.5}


def test_images_per_second_leave_the_evaluations_out(tmp_path):
    watch = RunWatch(tmp_path / "log.jsonl", torch.device("cpu"), batch_size=4, iteration=20, elapsed=100.0)
    watch.log({"type": "eval", "iter": 20, "mIoU": {}, "seconds": 2.0})
    stats = watch.step_stats(30, 112.0, torch.tensor(3.5), torch.amp.GradScaler("cuda", enabled=False))
    # 10 iterations x 4 images in 12 s of which 2 s were an evaluation
    assert stats["images_per_s"] == 4.0 and stats["grad_norm"] == 3.5 and "amp_scale" not in stats
    assert stats["peak_memory_mb"] > 0 and stats["memory"] == "cpu_peak_rss_of_process"


def test_a_resumed_segment_of_the_log_replaces_what_the_earlier_process_logged_after_its_checkpoint(tmp_path):
    lines = [{"type": "train", "iter": 1, "loss": 9}, {"type": "train", "iter": 2, "loss": 8},
             {"type": "checkpoint", "iter": 2}, {"type": "train", "iter": 3, "loss": 7},
             {"type": "eval", "iter": 3}, {"type": "failed", "iter": 3, "error": "x"},
             {"type": "train", "iter": 3, "loss": 6}, {"type": "train", "iter": 4, "loss": 5}]
    path = tmp_path / "log.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"type": "train", "it')  # a line cut short
    kept = [(e["type"], e["iter"], e.get("loss")) for e in read_run_log(path)]
    assert kept == [("train", 1, 9), ("train", 2, 8), ("checkpoint", 2, None), ("train", 3, 6), ("train", 4, 5)]
    entries = []
    merge_entry(entries, {"type": "failed", "iter": None})  # a failure before the first iteration
    merge_entry(entries, {"type": "train", "iter": 1})
    merge_entry(entries, {"type": "train", "iter": 1})
    assert [e["iter"] for e in entries] == [None, 1]


class _Stages(torch.nn.Module):
    """P0 says class 1 everywhere, P1 class 2 (logits at a quarter of the input size)."""
    stage_names = ["P0", "P1"]

    def forward(self, x, return_all=False):
        b, _, h, w = x.shape
        p0, p1 = torch.zeros(b, 3, h // 4, w // 4), torch.zeros(b, 3, h // 4, w // 4)
        p0[:, 1], p1[:, 2] = 1, 1
        return {"P0": p0, "P1": p1}


class _Split(list):
    palette, ignore_index = [(0, 0, 0), (200, 0, 0), (0, 0, 200)], 255


def test_the_prediction_strip_shows_image_label_and_each_stage_in_the_palette():
    label = torch.zeros(64, 96, dtype=torch.long)
    label[:, 48:] = 2
    label[0, 0] = 255
    split = _Split([{"image": torch.zeros(3, 64, 96), "label": label}])
    cfg = load_config(ROW, "smoke")  # whole-image protocol
    strip = prediction_strip(_Stages(), split, 0, cfg, torch.device("cpu"))
    # 4 panels of 192 x 288 (the 64 x 96 image at 192 px high), 3 gaps of 4 px, 16 px of names above
    assert strip.shape == (192 + 16, 4 * 288 + 3 * 4, 3) and strip.dtype == np.uint8
    panel = lambda k: strip[16:, k * 292: k * 292 + 288]  # noqa: E731
    assert (panel(1)[100, 10] == (0, 0, 0)).all() and (panel(1)[100, 200] == (0, 0, 200)).all()  # the label
    assert (panel(1)[0, 0] == (224, 224, 192)).all()  # an ignored pixel in VOC's void colour
    assert (panel(2) == (200, 0, 0)).all() and (panel(3) == (0, 0, 200)).all()  # P0 and P1
