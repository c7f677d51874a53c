"""The files `pna predict --format` writes, read back by each dataset's own loader in pna/data.

A random map of train ids is encoded, put where the dataset keeps its ground truth (a fixture in the
official layout), and read by ``build_dataset(...).load``: the ids must come back. The expected ids
of the encodings are typed here from their sources (docs/prediction_formats.md), not taken from the
code under test."""
import numpy as np
import pytest
import scipy.io
from PIL import Image

from pna.data import build_dataset, info
from pna.data.fixtures import write_fixture
from pna.inference.encodings import FORMATS, check_formats, encode, palette_png

SIZE = (24, 40)
# cityscapesScripts helpers/labels.py, lines 71-97: trainId -> id of the 19 evaluated classes
CITYSCAPES_ID_OF_TRAIN_ID = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]
# COCO-Stuff ids (1-based) that COCO never annotated (cocostuff README, "Label Names & Indices")
COCO_UNUSED_IDS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83, 91}


def every_class(num_classes: int, seed: int = 0) -> np.ndarray:
    """A SIZE map holding every id 0..num_classes-1 at least once, the rest random."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, num_classes, SIZE).astype(np.uint8)
    labels.flat[:num_classes] = np.arange(num_classes)
    return labels


def test_cityscapes_label_ids_are_the_official_table_and_read_back(tmp_path):
    labels = every_class(19)
    written = np.asarray(encode("cityscapes", labels))
    assert written.dtype == np.uint8 and written.ndim == 2
    assert np.array_equal(written, np.array(CITYSCAPES_ID_OF_TRAIN_ID)[labels])
    root = write_fixture("cityscapes", tmp_path, num_train=0, num_eval=1, size=SIZE)
    dataset = build_dataset("cityscapes", root, "val", label_type="labelIds")
    encode("cityscapes", labels).save(dataset.samples[0].label)
    assert np.array_equal(dataset.load(0)[1], labels)


def test_voc_palette_png_reads_back_with_the_voc_colours(tmp_path):
    labels = every_class(21)
    root = write_fixture("voc", tmp_path, num_train=0, num_eval=1, size=SIZE)
    dataset = build_dataset("voc", root, "val")
    encode("voc", labels).save(dataset.samples[0].label)
    assert np.array_equal(dataset.load(0)[1], labels)
    palette = Image.open(dataset.samples[0].label).getpalette()
    # the VOC colour map: 1 aeroplane (128,0,0), 2 bicycle (0,128,0), 15 person (192,128,128), 255 void (224,224,192)
    for index, rgb in {0: (0, 0, 0), 1: (128, 0, 0), 2: (0, 128, 0), 15: (192, 128, 128), 255: (224, 224, 192)}.items():
        assert tuple(palette[3 * index:3 * index + 3]) == rgb


def test_voc_palette_matches_a_real_voc_label(samples_dir):
    real = Image.open(samples_dir / "voc2012" / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "2007_000032.png")
    assert encode("voc", np.zeros((2, 2), np.uint8)).getpalette() == real.getpalette()


def test_cocostuff_ids_are_one_based_skip_the_unused_and_read_back(tmp_path):
    labels = every_class(171)
    ids = np.asarray(encode("cocostuff", labels))
    used = [k for k in range(1, 183) if k not in COCO_UNUSED_IDS]
    assert np.array_equal(ids, np.array(used)[labels])
    assert ids[labels == 0][0] == 1 and ids[labels == 11][0] == 13 and ids[labels == 80][0] == 92
    assert ids[labels == 170][0] == 182 and not np.isin(ids, list(COCO_UNUSED_IDS) + [0]).any()
    root = write_fixture("cocostuff10k", tmp_path, num_train=0, num_eval=1, size=SIZE)
    dataset = build_dataset("cocostuff10k", root, "val")
    scipy.io.savemat(dataset.samples[0].label, {"S": ids.astype(np.uint16)})  # the PNG's values as the .mat's S
    assert np.array_equal(dataset.load(0)[1], labels)


@pytest.mark.parametrize("unknown", ["ignore", "class"])
def test_deepglobe_colour_masks_read_back(tmp_path, unknown):
    labels = every_class(7)
    root = write_fixture("deepglobe", tmp_path, num_train=0, num_eval=1, size=SIZE)
    dataset = build_dataset("deepglobe", root, "test", unknown=unknown)
    encode("deepglobe", labels).save(dataset.samples[0].label)
    expected = labels.copy()
    if unknown == "ignore":  # "unknown" (class 6) is black, which the loader ignores by default
        expected[labels == 6] = 255
    assert np.array_equal(dataset.load(0)[1], expected)
    rgb = np.asarray(Image.open(dataset.samples[0].label))
    assert tuple(rgb[labels == 0][0]) == (0, 255, 255) and tuple(rgb[labels == 4][0]) == (0, 0, 255)
    assert tuple(rgb[labels == 6][0]) == (0, 0, 0)


def test_trans10k_masks_read_back(tmp_path):
    labels = every_class(3)
    root = write_fixture("trans10k", tmp_path, num_train=0, num_eval=1, size=SIZE)
    dataset = build_dataset("trans10k", root, "val")
    encode("trans10k", labels).save(dataset.samples[0].label)
    assert np.array_equal(dataset.load(0)[1], labels)
    rgb = np.asarray(Image.open(dataset.samples[0].label))
    assert tuple(rgb[labels == 1][0]) == (255, 0, 0) and tuple(rgb[labels == 2][0]) == (255, 255, 255)


@pytest.mark.parametrize("dataset", ["voc", "cityscapes", "cocostuff10k", "deepglobe", "trans10k", "synthetic"])
def test_the_label_map_png_holds_train_ids_in_the_dataset_colours(tmp_path, dataset):
    space = info(dataset)
    labels = every_class(space.num_classes)
    palette_png(labels, space.palette).save(tmp_path / "labels.png")
    back = Image.open(tmp_path / "labels.png")
    assert back.mode == "P" and np.array_equal(np.asarray(back), labels)
    colours = np.asarray(back.convert("RGB"))
    for k in (0, space.num_classes - 1):
        assert tuple(colours[labels == k][0]) == tuple(space.palette[k])


def test_a_format_for_another_dataset_is_refused():
    assert [f.name for f in check_formats(["voc"], info("voc_aug"))] == ["voc"]
    with pytest.raises(ValueError, match="format 'cityscapes' encodes cityscapes.*predicts voc_aug.*formats for it: \\['voc'\\]"):
        check_formats(["cityscapes"], info("voc_aug"))
    with pytest.raises(ValueError, match="unknown format 'kitti'"):
        check_formats(["kitti"], info("cityscapes"))
    assert set(FORMATS) == {"cityscapes", "voc", "cocostuff", "deepglobe", "trans10k"}
