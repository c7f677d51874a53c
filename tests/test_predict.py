"""`pna predict` and `pna.predict`: the labels `pna evaluate` scores, a batch with a bad file, no
overwriting, real photos with a smoke checkpoint and with a generated authors'-format file."""
import hashlib
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import pna
from pna.cli import dispatch
from pna.configs import apply_overrides, load_config

import authors_fixtures as fx

SMOKE_ROW = "voc/fcn_r50_os32_pna"
SYNTHETIC = {"num_train": 2, "num_val": 3, "size": 64, "seed": 0}


def smoke_checkpoint(path, changes=None):
    """A checkpoint in `pna train`'s format: the smoke row's model (random weights) and its config.
    The classifiers' weights are drawn large, so that the arg-max varies over an image (at random
    init it is one class everywhere, which any two label maps would share)."""
    from pna.models import create_model

    cfg = apply_overrides(load_config(SMOKE_ROW, "smoke"), changes or {})
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = create_model(cfg.model.name, 7, **cfg.model.overrides)
    with torch.no_grad():
        for name, weight in net.named_parameters():
            if name.endswith("classifier.weight") or name.endswith("classifier.1.weight"):
                weight.normal_(std=3.0)
    torch.save({"model": net.state_dict(), "config": cfg.to_dict()}, path)
    return path, cfg


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return smoke_checkpoint(tmp_path_factory.mktemp("ckpt") / "final.pt")[0]


def photos(folder, count=3, size=(30, 44)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(count):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(folder / f"p{k}.png")
    return folder


# ---- the same labels as `pna evaluate` ------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("protocol", [{}, {"data.eval_short_side": 48, "eval.mode": "slide", "eval.crop": (32, 32),
                                           "eval.stride": (24, 24)}], ids=["whole", "resized-slide"])
def test_predict_gives_exactly_the_labels_evaluate_scores(tmp_path, monkeypatch, protocol):
    from pna.engine import evaluate as evaluation
    from pna.engine.build import build_eval_set, model_from_checkpoint

    changes = {"data.root": str(tmp_path / "cache"), "data.options": SYNTHETIC, **protocol}
    path, cfg = smoke_checkpoint(tmp_path / "final.pt", changes)
    scored = []

    class Recording(evaluation.ConfusionMatrix):  # what evaluate_model scores, image by image
        def update(self, prediction, label):
            scored.extend(p.clone() for p in prediction)
            return super().update(prediction, label)

    monkeypatch.setattr(evaluation, "ConfusionMatrix", Recording)
    dataset = build_eval_set(cfg)
    model = model_from_checkpoint(torch.load(path, weights_only=True))
    evaluation.evaluate_with_config(model, dataset, cfg, boundary=None)
    stages = model.stage_names
    loaded = pna.load_model(path, device="cpu")
    seen = set()
    for index, sample in enumerate(dataset.samples):
        labels = pna.predict(loaded, sample.image, stages="all")
        assert list(labels) == stages
        for k, stage in enumerate(stages):  # evaluate scores stage by stage, batch by batch
            expected = scored[k * len(dataset) + index]
            assert labels[stage].shape == tuple(expected.shape) and np.array_equal(labels[stage], expected.numpy())
        seen |= set(np.unique(labels[stages[-1]]).tolist())
    assert len(seen) > 1  # not one class everywhere, which any two label maps would share


# ---- the batch runner -----------------------------------------------------------------------------
def test_a_corrupt_file_among_three_gives_two_outputs_one_error_line_and_status_1(checkpoint, tmp_path, capsys):
    folder = photos(tmp_path / "in")
    (folder / "p1.png").write_bytes((folder / "p1.png").read_bytes()[:200])  # truncated
    status = dispatch(["predict", str(folder), "--out", str(tmp_path / "out"), "--checkpoint", str(checkpoint),
                       "--workers", "2", "--batch-size", "2", "--overlay", "--device", "cpu"])
    err = capsys.readouterr().err
    assert status == 1
    lines = [line for line in err.splitlines() if "p1.png" in line]
    assert len(lines) == 1 and "cannot read image" in lines[0] and "truncated" in lines[0]
    assert sorted(p.name for p in (tmp_path / "out" / "labels").iterdir()) == ["p0_P4.png", "p2_P4.png"]
    assert sorted(p.name for p in (tmp_path / "out" / "overlay").iterdir()) == ["p0.jpg", "p2.jpg"]
    summary = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert summary["written"] == 2 and summary["failed"] == 1 and summary["failures"][0]["input"].endswith("p1.png")
    assert summary["model"]["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    assert [r["size"] for r in summary["images"]] == [[30, 44], [30, 44]]


def test_each_conversion_is_said_once_and_counted(checkpoint, tmp_path, capsys):
    folder = tmp_path / "gray"
    folder.mkdir()
    for k in range(3):
        Image.fromarray(np.full((20, 30), 40 * k, dtype=np.uint8)).save(folder / f"g{k}.png")
    Image.fromarray(np.zeros((20, 30, 3), dtype=np.uint8)).save(folder / "rgb.png")
    assert dispatch(["predict", str(folder), "--out", str(tmp_path / "out"), "--checkpoint", str(checkpoint),
                     "--workers", "0"]) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if "grayscale (L)" in line]
    assert len(said) == 1 and said[0].startswith("predict: note:")
    summary = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert summary["conversions"] == {"grayscale (L): the channel repeated to RGB": 3}


def test_outputs_are_never_overwritten_without_overwrite(checkpoint, tmp_path):
    folder = photos(tmp_path / "in", count=1)
    args = ["predict", str(folder), "--out", str(tmp_path / "out"), "--checkpoint", str(checkpoint), "--workers", "0"]
    assert dispatch(args) == 0
    label = tmp_path / "out" / "labels" / "p0_P4.png"
    label.write_bytes(b"the user's own file")
    summary_before = (tmp_path / "out" / "predictions.json").read_text()
    with pytest.raises(FileExistsError, match="p0_P4.png and 1 more exist"):
        dispatch(args)
    with pytest.raises(FileExistsError, match="predictions.json exist"):  # the summary alone is protected too
        dispatch(args[:-2] + ["--workers", "0", "--stages", "P0"])
    assert label.read_bytes() == b"the user's own file"
    assert (tmp_path / "out" / "predictions.json").read_text() == summary_before
    assert dispatch(args + ["--overwrite"]) == 0
    assert Image.open(label).mode == "P"
    assert not [p for p in (tmp_path / "out").rglob("*.tmp")]


def test_batched_and_single_runs_write_the_same_labels(checkpoint, tmp_path):
    folder = photos(tmp_path / "in", count=3)
    for batch, out in ((1, "one"), (3, "three")):
        assert dispatch(["predict", str(folder), "--out", str(tmp_path / out), "--checkpoint", str(checkpoint),
                         "--batch-size", str(batch), "--workers", "0", "--stages", "all"]) == 0
    for path in sorted((tmp_path / "one" / "labels").iterdir()):
        assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(tmp_path / "three" / "labels" / path.name)))


def test_wrong_arguments_are_one_line_errors_before_any_work(checkpoint, tmp_path):
    folder = photos(tmp_path / "in", count=1)
    with pytest.raises(ValueError, match="needs --config"):
        dispatch(["predict", str(folder), "--out", str(tmp_path / "o"), "--authors-checkpoint", str(checkpoint)])
    with pytest.raises(ValueError, match="one of --checkpoint or --authors-checkpoint"):
        dispatch(["predict", str(folder), "--out", str(tmp_path / "o")])
    with pytest.raises(ValueError, match="stages \\['P7'\\]"):
        dispatch(["predict", str(folder), "--out", str(tmp_path / "o"), "--checkpoint", str(checkpoint), "--stages", "P7"])
    with pytest.raises(ValueError, match="format 'voc' encodes voc, voc_aug labels, but this model predicts synthetic"):
        dispatch(["predict", str(folder), "--out", str(tmp_path / "o"), "--checkpoint", str(checkpoint), "--format", "voc"])
    torch.save({"meta": {}, "state_dict": {"decode_head.conv_seg.weight": torch.zeros(1)}}, tmp_path / "theirs.pth")
    with pytest.raises(ValueError, match="not a checkpoint written by `pna train`.*--config"):
        pna.load_model(tmp_path / "theirs.pth")
    assert not (tmp_path / "o").exists()


# ---- real photos ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_real_photo_end_to_end_with_a_smoke_checkpoint(checkpoint, samples_dir, tmp_path):
    photo = samples_dir / "voc2012" / "VOCdevkit" / "VOC2012" / "JPEGImages" / "2007_000063.jpg"
    assert dispatch(["predict", str(photo), "--out", str(tmp_path / "out"), "--checkpoint", str(checkpoint),
                     "--stages", "all", "--figure", "--overlay", "--workers", "0"]) == 0
    width, height = Image.open(photo).size
    for stage in ("P0", "P1", "P2", "P3", "P4"):
        labels = Image.open(tmp_path / "out" / "labels" / f"2007_000063_{stage}.png")
        assert labels.size == (width, height) and np.asarray(labels).max() < 7
    direct = pna.predict(pna.load_model(checkpoint), photo, stages="all")
    assert np.array_equal(direct["P2"], np.asarray(Image.open(tmp_path / "out" / "labels" / "2007_000063_P2.png")))
    figure = Image.open(tmp_path / "out" / "figures" / "2007_000063.png")
    assert figure.width > 5 * 200 and figure.height > 300
    overlay = Image.open(tmp_path / "out" / "overlay" / "2007_000063.jpg")
    assert overlay.height == height and overlay.width > width  # the legend at the right


@pytest.mark.slow
def test_a_real_photo_with_a_generated_authors_file_in_the_voc_format(samples_dir, tmp_path):
    src = samples_dir / "voc2012" / "VOCdevkit" / "VOC2012"
    path = tmp_path / "fcn_r50_pna_voc.pth"
    torch.save({"meta": {}, "state_dict": fx.fill(fx.mmseg_fcn_pna_r50_voc())}, path)
    out = tmp_path / "out"
    assert dispatch(["predict", str(src / "JPEGImages"), "--out", str(out), "--authors-checkpoint", str(path),
                     "--config", SMOKE_ROW, "--format", "voc", "--size", "128", "--workers", "0"]) == 0
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["model"]["kind"] == "authors" and summary["model"]["row"] == SMOKE_ROW
    assert summary["protocol"]["short_side"] == 128 and summary["written"] == 2
    from pna.data import build_dataset
    from pna.data.fixtures import write_fixture

    root = write_fixture("voc", tmp_path / "voc", num_train=0, num_eval=1, size=(24, 24))
    dataset = build_dataset("voc", root, "val")
    for name in ("2007_000032", "2007_000063"):
        width, height = Image.open(src / "JPEGImages" / f"{name}.jpg").size
        written = out / "voc" / f"{name}.png"
        dataset.samples[0].label.write_bytes(written.read_bytes())  # read by the VOC loader
        labels = dataset.read_label(dataset.samples[0].label)
        assert labels.shape == (height, width) and labels.max() <= 20
        assert np.array_equal(labels, np.asarray(Image.open(out / "labels" / f"{name}_P4.png")))


# ---- the pictures ---------------------------------------------------------------------------------
def test_overlay_blends_half_and_half_and_the_legend_lists_the_largest_class_first():
    from pna.inference.pictures import changed_pixels, overlay, present_classes

    rgb = np.full((10, 20, 3), 100, dtype=np.uint8)
    labels = np.zeros((10, 20), dtype=np.uint8)
    labels[:, 14:] = 2  # class 2: 60 pixels, class 0: 140
    palette = [(0, 0, 0), (9, 9, 9), (200, 0, 40)]
    picture = np.asarray(overlay(rgb, labels, palette, ["sky", "road", "car"]))
    assert picture[0, 0].tolist() == [50, 50, 50] and picture[0, 19].tolist() == [150, 50, 70]  # (100 + colour) / 2
    assert present_classes(labels) == ([0, 2], 0)
    before, after = labels.copy(), labels.copy()
    after[:5, :4] = 1  # 20 of 200 pixels change
    shown, share = changed_pixels(rgb, before, after)
    assert share == pytest.approx(0.1)
    highlighted = np.all(shown == shown[0, 0], axis=2)
    assert highlighted.sum() == 20 and highlighted[:5, :4].all() and not np.array_equal(shown[0, 0], shown[9, 19])
