"""The conversion scripts: --help, SBD -> SegmentationClassAug + train_aug, idempotence, no clobbering."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image

from data_prep import cityscapes, cocostuff10k, deepglobe, synthetic, trans10k, voc_aug
from pna.data import build_dataset

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = (voc_aug, cityscapes, cocostuff10k, deepglobe, trans10k, synthetic)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda m: m.__name__)
def test_help(script, capsys):
    with pytest.raises(SystemExit) as exit_:
        script.main(["--help"])
    assert exit_.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_runs_as_a_module():
    out = subprocess.run([sys.executable, "-m", "data_prep.trans10k", "--help"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "Trans10K" in out.stdout


def write_voc_and_sbd(tmp_path: Path):
    voc = tmp_path / "VOCdevkit" / "VOC2012"
    sbd = tmp_path / "benchmark_RELEASE" / "dataset"
    for d in (voc / "JPEGImages", voc / "SegmentationClass", voc / "ImageSets/Segmentation", sbd / "cls"):
        d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = {}
    for i in ("2007_000001", "2007_000002", "2008_000001", "2008_000002", "2008_000003"):
        Image.fromarray(rng.integers(0, 256, (10, 14, 3), dtype=np.uint8)).save(voc / "JPEGImages" / f"{i}.jpg")
        labels[i] = rng.choice([0, 5, 20], size=(10, 14)).astype(np.uint8)
    for i in ("2007_000001", "2007_000002"):  # VOC's own annotations (palette PNGs with a void border)
        lab = labels[i].copy()
        lab[0] = 255
        labels[i] = lab
        Image.fromarray(lab).convert("P").save(voc / "SegmentationClass" / f"{i}.png")
    for i in ("2007_000002", "2008_000001", "2008_000002", "2008_000003"):  # SBD .mat (GTcls struct)
        seg = labels[i] if i.startswith("2008") else np.zeros((10, 14), np.uint8)  # VOC's wins for 2007_000002
        scipy.io.savemat(sbd / "cls" / f"{i}.mat", {"GTcls": {"Segmentation": seg, "Boundaries": np.zeros(1),
                                                              "CategoriesPresent": np.array([5])}})
    (voc / "ImageSets/Segmentation/train.txt").write_text("2007_000001\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("2007_000002\n")
    (sbd / "train.txt").write_text("2008_000001\n2007_000002\n2008_000003\n")  # 2007_000002 is VOC val
    (sbd / "val.txt").write_text("2008_000002\n")
    return voc, sbd, labels


def test_voc_aug_from_sbd(tmp_path, capsys):
    voc, sbd, labels = write_voc_and_sbd(tmp_path)
    args = ["--voc-root", str(tmp_path), "--sbd-root", str(sbd)]
    assert voc_aug.main(args) == 0
    out = capsys.readouterr().out
    assert "SBD labels written: 3" in out and "VOC labels written: 2" in out and "train_aug ids: 4" in out
    assert (voc / "ImageSets/Segmentation/train_aug.txt").read_text().split() == [
        "2007_000001", "2008_000001", "2008_000002", "2008_000003"]  # VOC train + SBD train/val - VOC val
    for i, lab in labels.items():
        png = Image.open(voc / "SegmentationClassAug" / f"{i}.png")
        assert png.mode == "L" and np.array_equal(np.asarray(png), lab)
    ds = build_dataset("voc_aug", tmp_path, "train")
    assert [it["id"] for it in ds] == ["2007_000001", "2008_000001", "2008_000002", "2008_000003"]
    assert np.array_equal(ds[1]["label"].numpy(), labels["2008_000001"])
    assert voc_aug.main(args) == 0
    out = capsys.readouterr().out
    assert "SBD labels unchanged: 3" in out and "train_aug.txt unchanged: 1" in out


def test_voc_aug_rejects_bad_sbd_values(tmp_path):
    voc, sbd, _ = write_voc_and_sbd(tmp_path)
    scipy.io.savemat(sbd / "cls" / "2008_000001.mat", {"GTcls": {"Segmentation": np.full((10, 14), 42, np.uint8)}})
    with pytest.raises(ValueError, match=r"2008_000001.mat holds values \[42\]"):
        voc_aug.main(["--voc-root", str(voc), "--sbd-root", str(sbd)])
    scipy.io.savemat(sbd / "cls" / "2008_000001.mat", {"other": np.zeros(3)})
    with pytest.raises(ValueError, match=r"2008_000001.mat has no GTcls.Segmentation"):
        voc_aug.main(["--voc-root", str(voc), "--sbd-root", str(sbd)])


def test_outputs_that_differ_are_not_overwritten_without_the_flag(tmp_path):
    (tmp_path / "train" / "images").mkdir(parents=True)
    (tmp_path / "train" / "masks").mkdir()
    Image.new("RGB", (6, 4)).save(tmp_path / "train/images/7.jpg")
    Image.new("RGB", (6, 4), (255, 0, 0)).save(tmp_path / "train/masks/7_mask.png")
    assert trans10k.main(["--root", str(tmp_path)]) == 0
    label = tmp_path / "train/labels/7.png"
    Image.new("L", (6, 4), 2).save(label)  # someone's edited labels
    with pytest.raises(FileExistsError, match="7.png exists with different labels; pass --overwrite"):
        trans10k.main(["--root", str(tmp_path)])
    assert np.asarray(Image.open(label)).max() == 2
    assert trans10k.main(["--root", str(tmp_path), "--overwrite"]) == 0
    assert np.asarray(Image.open(label)).tolist() == [[1] * 6] * 4


def test_synthetic_script_prints_a_summary(tmp_path, capsys):
    assert synthetic.main(["--cache-dir", str(tmp_path), "--num-train", "3", "--num-val", "1", "--size", "48"]) == 0
    out = capsys.readouterr().out
    assert "labels: 4" in out and "classes found" in out and str(tmp_path) in out
