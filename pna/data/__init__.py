"""Datasets: one way in, ``build_dataset(name, root, split, transform=None, **options)``.

Every dataset yields ``{"image": float 3xHxW (ImageNet-normalised), "label": long HxW (255 =
ignore), "id": str}`` and carries ``classes``, ``palette``, ``num_classes``, ``eval_classes`` (ids
averaged into the mIoU) and ``ignore_index``. ``info(name)`` gives the same facts without files.

Example:
    >>> import tempfile
    >>> ds = build_dataset("synthetic", tempfile.mkdtemp(), "val", num_train=4, num_val=2, size=64)
    >>> item = ds[0]
    >>> item["image"].shape, item["label"].dtype, ds.num_classes
    (torch.Size([3, 64, 64]), torch.int64, 7)
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .base import SegmentationDataset, Transform
from .catalog import DATASETS, IGNORE_INDEX, DatasetInfo, info
from .cityscapes import CityscapesSegmentation
from .cocostuff import CocoStuff10k
from .deepglobe import DeepGlobeLandCover
from .roots import check_root
from .synthetic import SyntheticConfig, default_cache_dir, ensure_synthetic
from .trans10k import Trans10k
from .transforms import IMAGENET_MEAN, IMAGENET_STD, build_eval_transform, build_train_transform, denormalize
from .voc import VOCSegmentation

__all__ = [
    "DATASETS", "IGNORE_INDEX", "IMAGENET_MEAN", "IMAGENET_STD", "DatasetInfo", "SegmentationDataset",
    "SyntheticConfig", "build_dataset", "check_root", "build_eval_transform", "build_train_transform", "default_cache_dir",
    "denormalize", "ensure_synthetic", "info",
]


def build_dataset(name: str, root: str | Path | None, split: str, transform: Transform | None = None,
                  **options: Any) -> SegmentationDataset:
    """The dataset ``name`` (one of ``DATASETS``) at ``root``, split ``split``.

    ``options`` go to the dataset: ``synthetic`` takes ``num_train``, ``num_val``, ``size``, ``seed``
    (``root`` is its cache folder, ``None`` = ``$PNA_CACHE`` or ``~/.cache/pna``; the set is
    generated there on first use); ``cityscapes`` takes ``label_type``; ``cocostuff10k`` takes
    ``mat_version``. A ``root`` that holds another dataset, or ``options`` the dataset does not take,
    are one-line errors naming both (:mod:`pna.data.roots`).
    """
    if name in DATASETS:
        check_root(name, root, options)
    if name == "synthetic":
        folder = ensure_synthetic(root, **options)
        return VOCSegmentation(folder, split, transform, dataset_info=info("synthetic"))
    if name not in DATASETS:
        from pna.errors import unknown_name_error
        raise unknown_name_error("dataset", name, DATASETS, "pna.data.DATASETS")
    if root is None:
        raise ValueError(f"dataset {name!r} needs a root folder (only 'synthetic' has a default)")
    if name in ("voc", "voc_aug"):
        return VOCSegmentation(root, split, transform, aug=name == "voc_aug", **options)
    builders = {"cityscapes": CityscapesSegmentation, "cocostuff10k": CocoStuff10k,
                "deepglobe": DeepGlobeLandCover, "trans10k": Trans10k}
    return builders[name](root, split, transform, **options)
