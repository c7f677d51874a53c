"""Bad input on disk: every error names the file and says what was expected."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pna.data import build_dataset


def write_voc(root: Path, ids=("a", "b"), size=(12, 16)) -> Path:
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in ids:
        Image.fromarray(rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)).save(root / "JPEGImages" / f"{i}.jpg")
        label = Image.fromarray(rng.choice([0, 3, 255], size=size).astype(np.uint8)).convert("P")
        label.save(root / "SegmentationClass" / f"{i}.png")
    (root / "ImageSets/Segmentation/train.txt").write_text("\n".join(ids) + "\n")
    return root


def test_good_fixture_reads(tmp_path):
    ds = build_dataset("voc", write_voc(tmp_path), "train")
    assert len(ds) == 2 and set(ds[0]["label"].unique().tolist()) <= {0, 3, 255}


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"PASCAL VOC root: folder not found: {tmp_path / 'nope'}"):
        build_dataset("voc", tmp_path / "nope", "train")


def test_root_without_voc_layout(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no JPEGImages folder"):
        build_dataset("voc", tmp_path, "train")


def test_missing_split_list(tmp_path):
    write_voc(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"split list not found: .*val.txt \(lists there: \['train.txt'\]\)"):
        build_dataset("voc", tmp_path, "val")
    with pytest.raises(FileNotFoundError, match=r"train_aug.txt .*data_prep.voc_aug"):
        build_dataset("voc_aug", tmp_path, "train")


def test_empty_split_list(tmp_path):
    write_voc(tmp_path)
    (tmp_path / "ImageSets/Segmentation/val.txt").write_text("\n")
    with pytest.raises(ValueError, match="val.txt is empty"):
        build_dataset("voc", tmp_path, "val")


def test_image_without_label(tmp_path):
    write_voc(tmp_path)
    (tmp_path / "SegmentationClass" / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"image .*b.jpg has no label; expected the label file .*b.png"):
        build_dataset("voc", tmp_path, "train")


def test_listed_image_missing(tmp_path):
    write_voc(tmp_path)
    (tmp_path / "JPEGImages" / "a.jpg").unlink()
    with pytest.raises(FileNotFoundError, match=r"image of sample 'a' not found: .*a.jpg"):
        build_dataset("voc", tmp_path, "train")


def test_image_label_size_mismatch(tmp_path):
    write_voc(tmp_path)
    Image.new("P", (16, 11)).save(tmp_path / "SegmentationClass" / "a.png")
    with pytest.raises(ValueError, match=r"a.jpg is 16x12 \(WxH\) but its label .*a.png is 16x11"):
        build_dataset("voc", tmp_path, "train")[0]


def test_voc_label_value_outside_the_ids(tmp_path):
    write_voc(tmp_path)
    label = np.zeros((12, 16), dtype=np.uint8)
    label[2, 2] = 30
    Image.fromarray(label).convert("P").save(tmp_path / "SegmentationClass" / "a.png")
    with pytest.raises(ValueError, match=r"a.png holds values \[30\] outside this dataset's ids \(0..20, 255\)"):
        build_dataset("voc", tmp_path, "train")[0]


def test_unreadable_label_file(tmp_path):
    write_voc(tmp_path)
    (tmp_path / "SegmentationClass" / "a.png").write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match=r"cannot read image file .*a.png"):
        build_dataset("voc", tmp_path, "train")[0]


def test_truncated_image_file(tmp_path):
    write_voc(tmp_path)
    path = tmp_path / "JPEGImages" / "a.jpg"
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"cannot read image file .*a.jpg"):
        build_dataset("voc", tmp_path, "train")[0]


def test_colour_label_where_ids_are_expected(tmp_path):
    write_voc(tmp_path)
    Image.new("RGB", (16, 12), (128, 0, 0)).save(tmp_path / "SegmentationClass" / "a.png")
    with pytest.raises(ValueError, match=r"a.png has mode RGB; expected a palette \(P\) or grayscale \(L\) PNG"):
        build_dataset("voc", tmp_path, "train")[0]


def test_deepglobe_colour_that_is_no_class(tmp_path):
    tiles = tmp_path / "land-train"
    tiles.mkdir()
    Image.new("RGB", (8, 8)).save(tiles / "1_sat.jpg")
    mask = np.zeros((8, 8, 3), dtype=np.uint8)
    mask[0, 0] = (255, 0, 0)  # red is not a DeepGlobe colour
    Image.fromarray(mask).save(tiles / "1_mask.png")
    with pytest.raises(ValueError, match=r"1_mask.png holds colours \[\(255, 0, 0\)\]"):
        build_dataset("deepglobe", tmp_path, "train", ids=["1"])[0]
    with pytest.raises(FileNotFoundError, match=r"splits/train.txt .*data_prep.deepglobe"):
        build_dataset("deepglobe", tmp_path, "train")


def test_missing_split_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="Cityscapes images of split 'train': folder not found"):
        build_dataset("cityscapes", tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="Trans10K split 'val': folder not found: .*validation"):
        build_dataset("trans10k", tmp_path, "val")
    with pytest.raises(FileNotFoundError, match=r"split list not found: .*imageLists/train.txt"):
        build_dataset("cocostuff10k", tmp_path, "train")


def test_bad_names_and_options(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'kitti'; expected one of voc, voc_aug"):
        build_dataset("kitti", tmp_path, "train")
    with pytest.raises(ValueError, match="needs a root folder"):
        build_dataset("voc", None, "train")
    with pytest.raises(ValueError, match="Trans10k split must be one of"):
        build_dataset("trans10k", tmp_path, "training")
    with pytest.raises(ValueError, match="label_type must be one of"):
        build_dataset("cityscapes", tmp_path, "train", label_type="color")
