"""PASCAL VOC loaders on the real sample files in ../shared (SOURCES.md gives their provenance)."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pna.data import build_dataset, denormalize, info
from pna.data.catalog import voc_palette

IDS = ("2007_000032", "2007_000063")


@pytest.fixture
def voc_root(samples_dir: Path, tmp_path: Path) -> Path:
    """The two real samples in a VOCdevkit layout, with the split lists the samples lack."""
    src = samples_dir / "voc2012" / "VOCdevkit" / "VOC2012"
    root = tmp_path / "VOCdevkit" / "VOC2012"
    for sub, ext in (("JPEGImages", "jpg"), ("SegmentationClass", "png")):
        (root / sub).mkdir(parents=True)
        for i in IDS:
            (root / sub / f"{i}.{ext}").symlink_to(src / sub / f"{i}.{ext}")
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text(f"{IDS[0]}\n")
    (lists / "val.txt").write_text(f"{IDS[1]}\n")
    return root


def test_voc_train_sample_has_the_documented_ids_and_pixel_counts(voc_root):
    ds = build_dataset("voc", voc_root.parents[1], "train")  # a folder holding VOCdevkit/VOC2012 works too
    item = ds[0]
    label = item["label"]
    assert item["id"] == "2007_000032"
    assert label.dtype == torch.long and label.shape == (281, 500)
    values, counts = label.unique(return_counts=True)
    assert values.tolist() == [0, 1, 15, 255]
    assert counts[1].item() == 4734 and counts[2].item() == 866  # aeroplane, person
    assert ds.classes[1] == "aeroplane" and ds.classes[15] == "person"


def test_voc_val_sample_values(voc_root):
    item = build_dataset("voc", voc_root, "val")[0]
    assert item["label"].unique().tolist() == [0, 9, 12, 255]  # chair, dog, void


def test_voc_palette_matches_the_palette_stored_in_the_real_png(samples_dir):
    png = Image.open(samples_dir / "voc2012/VOCdevkit/VOC2012/SegmentationClass/2007_000032.png")
    assert png.mode == "P"
    stored = np.array(png.getpalette()[: 256 * 3]).reshape(256, 3)
    assert [tuple(c) for c in stored] == voc_palette()
    assert info("voc").palette[15] == tuple(stored[15]) == (192, 128, 128)


def test_voc_image_is_the_normalised_jpeg(voc_root):
    item = build_dataset("voc", voc_root, "train")[0]
    raw = torch.from_numpy(np.array(Image.open(voc_root / "JPEGImages" / "2007_000032.jpg"))).permute(2, 0, 1)
    assert item["image"].dtype == torch.float32 and item["image"].shape == (3, 281, 500)
    assert item["image"].mean().abs() < 3  # normalised, not 0..255
    assert torch.allclose(denormalize(item["image"]) * 255, raw.float(), atol=1e-3)


def test_voc_aug_reads_grayscale_labels_and_train_aug_list(voc_root):
    aug = voc_root / "SegmentationClassAug"
    aug.mkdir()
    for i in IDS:  # SBD-style: the same ids as plain 8-bit grayscale
        Image.fromarray(np.asarray(Image.open(voc_root / "SegmentationClass" / f"{i}.png"))).save(aug / f"{i}.png")
    (voc_root / "ImageSets" / "Segmentation" / "train_aug.txt").write_text("\n".join(IDS) + "\n")
    voc, voc_aug = build_dataset("voc", voc_root, "train"), build_dataset("voc_aug", voc_root, "train")
    assert len(voc_aug) == 2 and Image.open(aug / f"{IDS[0]}.png").mode == "L"
    assert torch.equal(voc_aug[0]["label"], voc[0]["label"])
    assert voc_aug.num_classes == 21 and voc_aug.eval_classes == list(range(21)) and voc_aug.ignore_index == 255
