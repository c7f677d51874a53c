"""Cityscapes, COCO-Stuff 10k and Trans10K on fixtures written here in the official formats."""
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from data_prep import cityscapes as prep_cityscapes
from data_prep import cocostuff10k as prep_cocostuff
from data_prep import trans10k as prep_trans10k
from pna.data import build_dataset, info

RNG = np.random.default_rng(0)


def rgb_image(path: Path, h: int, w: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(RNG.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(path)


# ---------------------------------------------------------------- Cityscapes
# raw labelId -> expected train id; 0 unlabeled, 1 ego vehicle, 4 static, 9 parking, 14 guard rail and
# 30 trailer are not evaluated, so they must become 255.
CITYSCAPES_CASES = {0: 255, 1: 255, 4: 255, 7: 0, 8: 1, 9: 255, 14: 255, 24: 11, 26: 13, 30: 255, 33: 18}


def write_cityscapes(root: Path, split: str = "val", city: str = "aachen", n: int = 2) -> list[np.ndarray]:
    raw_ids, labels = np.array(list(CITYSCAPES_CASES)), []
    for k in range(n):
        stem = f"{city}_{k:06d}_000019"
        rgb_image(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", 8, 16)
        gt = root / "gtFine" / split / city
        gt.mkdir(parents=True, exist_ok=True)
        raw = raw_ids[RNG.integers(0, len(raw_ids), size=(8, 16))].astype(np.uint8)
        raw[0, : len(raw_ids)] = raw_ids  # every case present
        Image.fromarray(raw, mode="L").save(gt / f"{stem}_gtFine_labelIds.png")
        Image.fromarray((raw.astype(np.int32) * 1000).astype(np.uint16)).save(gt / f"{stem}_gtFine_instanceIds.png")
        Image.new("RGBA", (16, 8), (128, 64, 128, 255)).save(gt / f"{stem}_gtFine_color.png")
        labels.append(raw)
    return labels


def expected_train_ids(raw: np.ndarray) -> np.ndarray:
    out = np.full_like(raw, 255)
    for label_id, train_id in CITYSCAPES_CASES.items():
        out[raw == label_id] = train_id
    return out


def test_cityscapes_label_ids_map_to_train_ids(tmp_path):
    raws = write_cityscapes(tmp_path)
    ds = build_dataset("cityscapes", tmp_path, "val")
    assert ds.label_type == "labelIds" and len(ds) == 2 and ds.num_classes == 19
    for item, raw in zip(ds, raws):
        assert item["label"].dtype == torch.long
        assert np.array_equal(item["label"].numpy(), expected_train_ids(raw))
    assert ds[0]["id"] == "aachen_000000_000019"
    assert ds.classes[13] == "car" and ds.palette[0] == (128, 64, 128)


def test_cityscapes_prep_writes_train_ids_that_the_loader_then_prefers(tmp_path, capsys):
    raws = write_cityscapes(tmp_path)
    assert prep_cityscapes.main(["--root", str(tmp_path)]) == 0
    assert "val: written: 2" in capsys.readouterr().out
    written = np.asarray(Image.open(tmp_path / "gtFine/val/aachen/aachen_000000_000019_gtFine_labelTrainIds.png"))
    assert np.array_equal(written, expected_train_ids(raws[0]))
    ds = build_dataset("cityscapes", tmp_path, "val")
    assert ds.label_type == "labelTrainIds"
    assert np.array_equal(ds[1]["label"].numpy(), expected_train_ids(raws[1]))
    assert prep_cityscapes.main(["--root", str(tmp_path)]) == 0
    assert "val: unchanged: 2" in capsys.readouterr().out


def test_cityscapes_label_id_outside_0_33_is_an_error(tmp_path):
    write_cityscapes(tmp_path, n=1)
    path = tmp_path / "gtFine/val/aachen/aachen_000000_000019_gtFine_labelIds.png"
    raw = np.asarray(Image.open(path)).copy()
    raw[3, 3] = 40
    Image.fromarray(raw).save(path)
    with pytest.raises(ValueError, match=r"aachen_000000_000019_gtFine_labelIds.png holds values \[40\]"):
        build_dataset("cityscapes", tmp_path, "val")[0]


# ---------------------------------------------------------------- COCO-Stuff 10k
# S value (release v1.1) -> (train id, class name); 12 (street sign) and 91 (hair brush) are
# thing ids COCO never annotated, 0 is unlabeled.
COCO_CASES = {0: 255, 1: 0, 12: 255, 13: 11, 91: 255, 92: 80, 150: 138, 182: 170}


def write_cocostuff(root: Path, ids=("COCO_train2014_000000000077", "COCO_train2014_000000000078")) -> dict:
    (root / "annotations").mkdir(parents=True)
    (root / "imageLists").mkdir()
    values, maps = np.array(list(COCO_CASES)), {}
    for i in ids:
        rgb_image(root / "images" / f"{i}.jpg", 6, 10)
        s = values[RNG.integers(0, len(values), size=(6, 10))].astype(np.uint16)
        s[0, : len(values)] = values
        scipy.io.savemat(root / "annotations" / f"{i}.mat", {"S": s, "names": np.array(["x"], dtype=object)})
        maps[i] = s
    (root / "imageLists" / "train.txt").write_text(ids[0] + "\n")
    (root / "imageLists" / "test.txt").write_text(ids[1] + "\n")
    return maps


def expected_coco(s: np.ndarray) -> np.ndarray:
    out = np.full(s.shape, 255, dtype=np.int64)
    for value, train_id in COCO_CASES.items():
        out[s == value] = train_id
    return out


def test_cocostuff_class_names_at_their_train_ids():
    names = info("cocostuff10k").classes
    assert len(names) == 171 and info("cocostuff10k").num_classes == 171
    assert (names[0], names[11], names[79], names[80], names[138], names[170]) == (
        "person", "stop sign", "toothbrush", "banner", "rock", "wood")


def test_cocostuff_mat_S_maps_to_171_train_ids(tmp_path):
    maps = write_cocostuff(tmp_path)
    train, val = build_dataset("cocostuff10k", tmp_path, "train"), build_dataset("cocostuff10k", tmp_path, "val")
    assert np.array_equal(train[0]["label"].numpy(), expected_coco(maps[train[0]["id"]]))
    assert np.array_equal(val[0]["label"].numpy(), expected_coco(maps[val[0]["id"]]))  # "val" reads test.txt


def test_cocostuff_release_1_0_offsets(tmp_path):
    maps = write_cocostuff(tmp_path)
    s = maps["COCO_train2014_000000000077"]
    v10 = np.clip(s, 1, 172).astype(np.uint16)
    scipy.io.savemat(tmp_path / "annotations/COCO_train2014_000000000077.mat", {"S": v10})
    label = build_dataset("cocostuff10k", tmp_path, "train", mat_version="1.0")[0]["label"].numpy()
    assert np.array_equal(label, np.where(v10 == 1, 255, v10.astype(np.int64) - 2))


def test_cocostuff_prep_then_loader_reads_pngs(tmp_path, capsys):
    maps = write_cocostuff(tmp_path)
    assert prep_cocostuff.main(["--root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "train: written: 1" in out and "classes found: 5 of 171" in out
    ds = build_dataset("cocostuff10k", tmp_path, "train")
    assert ds.use_png and ds.samples[0].label.suffix == ".png"
    assert np.array_equal(ds[0]["label"].numpy(), expected_coco(maps[ds[0]["id"]]))


def test_cocostuff_errors_say_what_was_found(tmp_path):
    write_cocostuff(tmp_path)
    path = tmp_path / "annotations/COCO_train2014_000000000077.mat"
    scipy.io.savemat(path, {"S": np.full((6, 10), 200, dtype=np.uint16)})
    with pytest.raises(ValueError, match=r"holds values \[200\].*mat_version='1.0'"):
        build_dataset("cocostuff10k", tmp_path, "train")[0]
    scipy.io.savemat(path, {"labels": np.zeros((6, 10))})
    with pytest.raises(ValueError, match=r"has no key 'S' \(keys: \['labels'\]\)"):
        build_dataset("cocostuff10k", tmp_path, "train")[0]


# ---------------------------------------------------------------- Trans10K
def write_trans10k(root: Path, split_folder: str, stems=("1", "2")) -> list[np.ndarray]:
    ids = []
    for stem in stems:
        rgb_image(root / split_folder / "images" / f"{stem}.jpg", 12, 20)
        cls = RNG.integers(0, 3, size=(12, 20))
        cls[0, :3] = [0, 1, 2]
        colours = np.array([(0, 0, 0), (255, 0, 0), (255, 255, 255)], dtype=np.uint8)
        (root / split_folder / "masks").mkdir(exist_ok=True)
        Image.fromarray(colours[cls]).save(root / split_folder / "masks" / f"{stem}_mask.png")
        ids.append(cls)
    return ids


def test_trans10k_rgb_masks(tmp_path):
    classes = write_trans10k(tmp_path, "validation")
    ds = build_dataset("trans10k", tmp_path, "val")
    assert [item["id"] for item in ds] == ["1", "2"]
    for item, cls in zip(ds, classes):
        assert np.array_equal(item["label"].numpy(), cls)
    assert ds.eval_classes == [1, 2] and ds.classes == ["background", "things", "stuff"]


def test_trans10k_prep_and_stray_colour(tmp_path, capsys):
    classes = write_trans10k(tmp_path, "train")
    assert prep_trans10k.main(["--root", str(tmp_path)]) == 0
    assert "train: written: 2" in capsys.readouterr().out
    ds = build_dataset("trans10k", tmp_path, "train")
    assert ds.samples[0].label == tmp_path / "train" / "labels" / "1.png"
    assert np.array_equal(ds[0]["label"].numpy(), classes[0])
    mask = np.asarray(Image.open(tmp_path / "train/masks/2_mask.png")).copy()
    mask[5, 5] = (0, 255, 0)
    Image.fromarray(mask).save(tmp_path / "train/masks/2_mask.png")
    with pytest.raises(ValueError, match=r"2_mask.png holds colours \[\(0, 255, 0\)\]"):
        prep_trans10k.main(["--root", str(tmp_path)])
