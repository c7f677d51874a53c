"""SBD (Hariharan et al.) + VOC 2012 -> SegmentationClassAug PNGs and the 10,582-id train_aug.txt.

Reads ``benchmark_RELEASE/dataset/cls/*.mat`` (``GTcls.Segmentation``) and VOC's own
``SegmentationClass`` palette PNGs; writes 8-bit grayscale ``SegmentationClassAug/<id>.png`` (VOC's
annotation wins where both exist) and ``ImageSets/Segmentation/train_aug.txt`` = (VOC train + SBD
train + SBD val) - VOC val.

    python -m data_prep.voc_aug --voc-root data/VOCdevkit/VOC2012 --sbd-root data/benchmark_RELEASE/dataset
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from pna.data.base import check_values, read_id_list, read_index_png
from pna.data.catalog import VOC_CLASSES
from pna.data.voc import resolve_voc_root

from .common import Report, check_same_size, parser, write_label_png, write_list

EXPECTED_TRAIN_AUG = 10582
VALID_IDS = list(range(21)) + [255]


def read_sbd_mat(path: Path) -> np.ndarray:
    """The class map of one SBD ``cls/<id>.mat`` file."""
    try:
        mat = scipy.io.loadmat(path, simplify_cells=True)
        seg = np.asarray(mat["GTcls"]["Segmentation"])
    except (KeyError, TypeError) as err:
        raise ValueError(f"SBD file {path} has no GTcls.Segmentation; expected an SBD cls/*.mat file") from err
    except Exception as err:
        raise ValueError(f"cannot read SBD file {path}: {err}") from err
    return check_values(seg, VALID_IDS, path).astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__)
    p.add_argument("--voc-root", required=True, type=Path, help="VOCdevkit/VOC2012 (or a folder holding it)")
    p.add_argument("--sbd-root", required=True, type=Path, help="benchmark_RELEASE/dataset (cls/, train.txt, val.txt)")
    args = p.parse_args(argv)
    voc = resolve_voc_root(args.voc_root)
    lists = voc / "ImageSets" / "Segmentation"
    voc_train, voc_val = read_id_list(lists / "train.txt"), read_id_list(lists / "val.txt")
    sbd_train, sbd_val = read_id_list(args.sbd_root / "train.txt"), read_id_list(args.sbd_root / "val.txt")
    out_dir, report = voc / "SegmentationClassAug", Report(21)

    voc_ids = sorted(set(voc_train) | set(voc_val))
    for i in voc_ids:
        src = voc / "SegmentationClass" / f"{i}.png"
        label = check_values(read_index_png(src), VALID_IDS, src)
        check_same_size(voc / "JPEGImages" / f"{i}.jpg", label.shape, src)
        report.counts[f"VOC labels {write_label_png(out_dir / f'{i}.png', label, args.overwrite)}"] += 1
        report.add_label(label)
    for i in sorted((set(sbd_train) | set(sbd_val)) - set(voc_ids)):
        src = args.sbd_root / "cls" / f"{i}.mat"
        if not src.is_file():
            raise FileNotFoundError(f"SBD lists id {i} but {src} does not exist")
        label = read_sbd_mat(src)
        check_same_size(voc / "JPEGImages" / f"{i}.jpg", label.shape, src)
        report.counts[f"SBD labels {write_label_png(out_dir / f'{i}.png', label, args.overwrite)}"] += 1
        report.add_label(label)

    train_aug = sorted((set(voc_train) | set(sbd_train) | set(sbd_val)) - set(voc_val))
    report.counts[f"train_aug.txt {write_list(lists / 'train_aug.txt', train_aug, args.overwrite)}"] += 1
    report.counts["train_aug ids"] = len(train_aug)
    report.print(f"SegmentationClassAug in {out_dir}", VOC_CLASSES)
    if len(train_aug) != EXPECTED_TRAIN_AUG:
        print(f"  note: train_aug has {len(train_aug)} ids; the full VOC 2012 + SBD downloads give {EXPECTED_TRAIN_AUG}")
    return 0


if __name__ == "__main__":
    from pna.errors import run_main

    raise SystemExit(run_main(main))  # errors as one line; --debug shows the traceback
