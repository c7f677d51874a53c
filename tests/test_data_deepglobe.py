"""DeepGlobe colour decoding on the real masks in ../shared, and the conversion script on crops of them."""
from pathlib import Path

import numpy as np
import torch
import pytest
from PIL import Image

from data_prep import deepglobe as prep
from pna.data import build_dataset
from pna.data.deepglobe import DEEPGLOBE_COLOUR_TO_ID, decode_colour_mask

# The DeepGlobe land-cover colours (the challenge's specification: urban, agriculture, rangeland,
# forest, water, barren, unknown) in the authors' class order: their colour dict lists cyan first,
# then yellow, magenta, green, blue, white (main:pna/datasets/register_deep_globe.py:34-40); black,
# "unknown", is ignored (255) in the default mode (paper, Experiments on DeepGlobe: 6 land classes scored).
URBAN, AGRICULTURE, RANGELAND, FOREST, WATER, BARREN = (0, 255, 255), (255, 255, 0), (255, 0, 255), (0, 255, 0), (0, 0, 255), (255, 255, 255)
UNKNOWN = (0, 0, 0)
EXPECTED_IDS = {URBAN: 0, AGRICULTURE: 1, RANGELAND: 2, FOREST: 3, WATER: 4, BARREN: 5, UNKNOWN: 255}
ALL_COLOURS = set(EXPECTED_IDS)


def colour_counts(rgb: np.ndarray) -> dict[tuple[int, int, int], int]:
    packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    codes, counts = np.unique(packed, return_counts=True)
    return {(int(c) >> 16, (int(c) >> 8) & 255, int(c) & 255): int(n) for c, n in zip(codes, counts)}


@pytest.mark.parametrize("tile, has_unknown", [("855", False), ("6399", True)])
def test_real_masks_decode_colour_by_colour(samples_dir, tile, has_unknown):
    path = samples_dir / "deepglobe" / "land-train" / f"{tile}_mask.png"
    rgb = np.asarray(Image.open(path).convert("RGB"))
    counts = colour_counts(rgb)
    assert set(counts) <= ALL_COLOURS and (UNKNOWN in counts) == has_unknown
    label = decode_colour_mask(path, DEEPGLOBE_COLOUR_TO_ID)
    decoded = np.bincount(label.ravel(), minlength=256)
    for colour, class_id in EXPECTED_IDS.items():  # unknown -> 255, ignored
        assert decoded[class_id] == counts.get(colour, 0), colour
    assert decoded.sum() == 2448 * 2448


def test_colour_table_is_the_authors_order():
    # the real masks above hold 6 and 7 of the colours; this covers any colour a tile may lack
    assert DEEPGLOBE_COLOUR_TO_ID == EXPECTED_IDS


def test_colours_off_by_less_than_half_are_thresholded_at_128(samples_dir, tmp_path):
    rgb = np.asarray(Image.open(samples_dir / "deepglobe/land-train/6399_mask.png").convert("RGB"))[:300, :300]
    noisy = np.where(rgb >= 128, rgb - 60, rgb + 60).astype(np.uint8)  # e.g. 255 -> 195, 0 -> 60
    Image.fromarray(rgb).save(tmp_path / "clean.png")
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    clean = decode_colour_mask(tmp_path / "clean.png", DEEPGLOBE_COLOUR_TO_ID)
    assert np.array_equal(decode_colour_mask(tmp_path / "noisy.png", DEEPGLOBE_COLOUR_TO_ID), clean)


def test_loader_on_real_tiles(samples_dir, tmp_path):
    (tmp_path / "land-train").symlink_to(samples_dir / "deepglobe" / "land-train")
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "val.txt").write_text("6399\n")
    ds = build_dataset("deepglobe", tmp_path, "val")
    item = ds[0]
    assert item["image"].shape == (3, 2448, 2448) and item["label"].shape == (2448, 2448)
    assert set(item["label"].unique().tolist()) == {0, 1, 2, 3, 4, 5, 255}
    assert ds.num_classes == 7 and ds.eval_classes == [0, 1, 2, 3, 4, 5]  # 7 outputs, 6 scored
    assert ds.palette[0] == (0, 255, 255) and ds.classes[0] == "urban" and ds.classes[6] == "unknown"
    # the authors' training reads "unknown" as class 6; the same pixels are 255 when scoring
    trained = build_dataset("deepglobe", tmp_path, "val", unknown="class")[0]["label"]
    assert set(trained.unique().tolist()) == {0, 1, 2, 3, 4, 5, 6}
    assert torch.equal(trained == 6, item["label"] == 255)
    with pytest.raises(ValueError, match="unknown must be one of"):
        build_dataset("deepglobe", tmp_path, "val", unknown="drop")


def test_prep_writes_index_labels_and_a_fixed_disjoint_split(samples_dir, tmp_path, capsys):
    tiles = tmp_path / "land-train"
    tiles.mkdir()
    src = samples_dir / "deepglobe" / "land-train"
    sat, mask = Image.open(src / "6399_sat.jpg"), Image.open(src / "6399_mask.png")
    for n in range(5):  # five small tiles cut from the real one
        box = (n * 400, n * 400, n * 400 + 48, n * 400 + 48)
        sat.crop(box).save(tiles / f"{n}_sat.jpg")
        mask.crop(box).save(tiles / f"{n}_mask.png")
    assert prep.main(["--root", str(tmp_path), "--split", "sha256", "--sizes", "2", "2", "1"]) == 0
    assert "classes found" in capsys.readouterr().out
    splits = {s: (tmp_path / "splits" / f"{s}.txt").read_text().split() for s in ("train", "val", "test")}
    assert [len(v) for v in splits.values()] == [2, 2, 1]
    assert sorted(sum(splits.values(), [])) == [str(n) for n in range(5)]
    order = prep.split_order([str(n) for n in range(5)])  # the documented order, cut 2/2/1
    assert (splits["train"], splits["val"], splits["test"]) == (sorted(order[:2]), sorted(order[2:4]), order[4:])
    converted = build_dataset("deepglobe", tmp_path, "train")
    assert converted.use_png
    for item, i in zip(converted, splits["train"]):
        assert np.array_equal(item["label"].numpy(), decode_colour_mask(tiles / f"{i}_mask.png", DEEPGLOBE_COLOUR_TO_ID))
    assert prep.main(["--root", str(tmp_path), "--split", "sha256", "--sizes", "2", "2", "1"]) == 0  # idempotent
    assert "labels unchanged: 5" in capsys.readouterr().out
    with pytest.raises(ValueError, match="add up to 4 but .* holds 5"):
        prep.main(["--root", str(tmp_path), "--split", "sha256", "--sizes", "2", "1", "1"])


# ---- MagNet's split (the paper's 454 / 207 / 142) -------------------------------------------------------
def test_shipped_magnet_split_has_the_papers_sizes_and_their_tiles():
    split = prep.shipped_magnet_split()
    assert [len(split[s]) for s in prep.SPLITS] == [454, 207, 142]
    assert len(set(sum(split.values(), []))) == 803  # disjoint, every land-train tile
    # read by eye in VinAIResearch/MagNet@7f5b876:data/list/deepglobe/: train.txt lines 1, 159 and 409,
    # val.txt line 1, test.txt lines 1 and 142
    assert split["train"][0] == "621206" and split["train"][158] == "6399" and split["train"][408] == "855"
    assert split["val"][0] == "455374" and split["test"][0] == "857201" and split["test"][-1] == "412210"


def _tiles(samples_dir, root, ids):
    tiles = root / "land-train"
    tiles.mkdir(parents=True)
    src = samples_dir / "deepglobe" / "land-train"
    sat, mask = Image.open(src / "6399_sat.jpg"), Image.open(src / "6399_mask.png")
    for n, i in enumerate(ids):
        box = (n * 300, n * 300, n * 300 + 40, n * 300 + 40)
        sat.crop(box).save(tiles / f"{i}_sat.jpg")
        mask.crop(box).save(tiles / f"{i}_mask.png")


def test_split_file_reads_magnets_list_format(samples_dir, tmp_path, capsys):
    _tiles(samples_dir, tmp_path, ["11", "22", "33", "44"])
    lists = tmp_path / "lists"
    lists.mkdir()
    line = "land-train/{0}_sat.jpg\tland-train/{0}_mask.png"
    for split, ids in (("train", ["33", "11"]), ("val", ["44"]), ("test", ["22"])):
        (lists / f"{split}.txt").write_text("\n".join(line.format(i) for i in ids))  # no final newline, as theirs
    assert prep.main(["--root", str(tmp_path), "--split-file", str(lists)]) == 0
    written = {s: (tmp_path / "splits" / f"{s}.txt").read_text().split() for s in prep.SPLITS}
    assert written == {"train": ["33", "11"], "val": ["44"], "test": ["22"]}
    assert "MagNet lists in" in capsys.readouterr().out
    (lists / "val.txt").write_text("land-train/44_sat.jpg land-train/44_mask.png\n")  # spaces, not a tab
    with pytest.raises(ValueError, match="val.txt:1: .*MagNet's list format"):
        prep.main(["--root", str(tmp_path), "--split-file", str(lists), "--overwrite"])
    (lists / "val.txt").write_text(line.format("55") + "\n")
    with pytest.raises(FileNotFoundError, match="lists 1 tiles that .* lacks .*55_mask.png"):
        prep.main(["--root", str(tmp_path), "--split-file", str(lists), "--overwrite"])


def test_default_split_is_magnets_and_names_missing_tiles_before_converting(samples_dir, tmp_path):
    _tiles(samples_dir, tmp_path, ["855", "6399"])  # two of MagNet's 803 tiles only
    with pytest.raises(FileNotFoundError, match=r"MagNet's split .* lists 801 tiles that .* lacks"):
        prep.main(["--root", str(tmp_path)])
    assert not (tmp_path / "labels").exists() and not (tmp_path / "splits").exists()


# ---- the three DeepGlobe numbers on a hand-made confusion matrix ------------------------------------------
def _hand_made_matrix():
    from pna.engine.metrics import ConfusionMatrix

    cm = ConfusionMatrix(7, eval_classes=[0, 1, 2, 3, 4, 5])  # ours: urban..barren 0..5, unknown 6
    m = torch.zeros(7, 7, dtype=torch.int64)  # rows: labels, columns: predictions
    for c in range(6):
        m[c, c] = 10
    m[1, 5] = 4             # agriculture predicted barren
    m[5, 6] = 2             # barren predicted unknown
    m[6, 0], m[6, 6] = 5, 5  # unknown ground truth: half predicted urban
    cm.matrix = m
    return cm


def test_magnets_metric_keeps_unknown_ground_truth():
    # urban 10/(10+15-10), agriculture 10/14, rangeland, forest, water 1, barren 10/(12+14-10)
    assert _hand_made_matrix().miou() == pytest.approx((2 / 3 + 10 / 14 + 3 + 10 / 16) / 6)


def test_authors_evaluator_in_both_readings():
    from pna.data.deepglobe import AUTHORS_CLASSES, DeepGlobeLandCover

    out = _hand_made_matrix().summary(authors_classes=list(AUTHORS_CLASSES),
                                      other_readings=DeepGlobeLandCover.authors_readings)
    # MagNet's encoding: ids 0..5 = unknown, urban..water; barren's row and column dropped:
    # unknown 5/(10+5-5), urban 10/15, agriculture 10/10 (its 4 pixels predicted barren dropped), 3 x 1
    assert out["mIoU_authors"] == pytest.approx((1 / 2 + 2 / 3 + 1 + 3) / 6)
    # unknown last: ids 0..5 = the land classes; unknown's row and column dropped:
    # urban 10/10, agriculture 10/14, 3 x 1, barren 10/(10+14-10)
    assert out["mIoU_authors_unknown_last"] == pytest.approx((1 + 10 / 14 + 3 + 10 / 14) / 6)


def test_paper_profile_scores_unknown_ground_truth_as_a_class(samples_dir, tmp_path):
    from pna.configs import load_config

    (tmp_path / "land-train").symlink_to(samples_dir / "deepglobe" / "land-train")
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "test.txt").write_text("6399\n")
    d = load_config("deepglobe/fpn_r52_pna", "paper").data
    label = build_dataset("deepglobe", tmp_path, d.eval_split, **{**d.options, **d.eval_options})[0]["label"]
    rgb = np.asarray(Image.open(samples_dir / "deepglobe/land-train/6399_mask.png").convert("RGB"))
    assert int((label == 6).sum()) == colour_counts(rgb)[UNKNOWN] > 0 and not (label == 255).any()
