"""Measurements of a paper config's training pipeline for the fidelity report: the loss of a crafted
batch, the learning-rate schedule, the transforms and the padding of real transformed samples.

The loss is measured, not read: a crafted batch (8 images, 3 classes, 8x8 pixels, 0 to 56 of each
image's 64 pixels ignored) goes through the row's ``SegmentationLoss``, and each output's value is
matched against reductions computed here independently (mean over all pixels, over the labelled
ones, top 20 % of all pixels per chunk of 1, 2, 4 or 8 images).

Example::

    >>> from pna.configs import load_config
    >>> loss_facts('{"mean_over": "all"}', ("P0", "aux"))["loss"]
    (('P0', 'mean over all pixels'), ('aux', 'mean over all pixels'))
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
from typing import Any

import torch
import torch.nn.functional as F
from torchvision import tv_tensors

from pna.tools.fidelity_expect import MEAN_ALL, MEAN_VALID, top_k

LOSS_BATCH, LOSS_CLASSES, LOSS_SIZE = 8, 3, 8
HARD_FRACTIONS, CHUNKS = (0.2,), (1, 2, 4, 8)
PAD_SEEDS = 40  # transformed samples drawn until both a flipped and an unflipped padded one are seen
PAD_IMAGE = 100  # side of the crafted square image (smaller than every paper crop after MMSeg's resize)


def crafted_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels): image i has its first 8 i pixels ignored (label 255)."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(LOSS_BATCH, LOSS_CLASSES, LOSS_SIZE, LOSS_SIZE, generator=g)
    labels = torch.randint(0, LOSS_CLASSES, (LOSS_BATCH, LOSS_SIZE, LOSS_SIZE), generator=g)
    for i in range(LOSS_BATCH):
        labels[i].view(-1)[: 8 * i] = 255
    return logits, labels


def reductions(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Every candidate reduction of the crafted batch's pixel losses, by name."""
    pixel = F.cross_entropy(logits, labels, ignore_index=255, reduction="none")  # ignored pixels: 0
    out = {MEAN_ALL: pixel.sum().item() / pixel.numel(), MEAN_VALID: pixel[labels != 255].mean().item()}
    for fraction in HARD_FRACTIONS:
        for chunk in CHUNKS:
            means = []
            for part in pixel.split(chunk):
                values = sorted(part.flatten().tolist(), reverse=True)
                k = max(1, int(fraction * len(values)))
                means.append(sum(values[:k]) / k)
            out[top_k(fraction, chunk)] = sum(means) / len(means)
    return out


@functools.lru_cache(maxsize=None)
def loss_facts(loss_json: str, outputs: tuple[str, ...]) -> dict[str, Any]:
    """How the row's loss reduces each dense output (and its weights), measured on the crafted batch."""
    from pna.models import SegmentationLoss

    criterion = SegmentationLoss(**json.loads(loss_json))
    logits, labels = crafted_batch()
    _, parts = criterion({name: logits for name in outputs}, labels)
    candidates = reductions(logits, labels)
    kinds = []
    for name in outputs:
        value = parts[name].item()
        match = [k for k, v in candidates.items() if math.isclose(value, v, rel_tol=1e-5)]
        kinds.append((name, " | ".join(match) or f"unknown ({value:.5f})"))
    return {"loss": tuple(kinds), "loss_values": tuple((n, round(parts[n].item(), 5)) for n in outputs),
            "loss_weights": tuple((n, criterion.weights[n]) for n in outputs)}


@functools.lru_cache(maxsize=None)
def schedule_facts(iters: int, warmup: int, ratio: float, power: float, min_lr: float) -> dict[str, Any]:
    """The built scheduler's poly power and warmup (length, starting factor), read off its lr factors."""
    from pna.engine.optim import build_scheduler

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    factor = build_scheduler(optimizer, iters, warmup, ratio, power, min_lr).lr_lambdas[0]
    probe = max(iters // 2, warmup + 1)
    measured_power = round(math.log(factor(probe)) / math.log(1 - probe / iters), 6)

    def poly(t: int) -> float:
        return (1 - t / iters) ** measured_power

    length = next(t for t in range(iters) if math.isclose(factor(t), poly(t), rel_tol=1e-9))
    return {"lr_schedule": measured_power, "warmup": (length, float(f"{factor(0):.3g}") if length else None),
            "max_iters": next(t for t in range(iters, iters + 2) if factor(t) == 0.0)}


def _padding(samples: list[tuple[torch.Tensor, torch.Tensor, bool]], collate) -> tuple:
    """(stage, image pad value, label pad value, position, target) of a collated batch of samples."""
    batch = collate([{"image": x, "label": y, "id": str(i)} for i, (x, y, _) in enumerate(samples)])
    images, labels = batch["image"], batch["label"]
    pad = labels == 255
    if not pad.any():
        return ("no padding seen",)
    corner = all(_is_top_left(~pad[i]) for i in range(len(labels)))
    values = images.permute(1, 0, 2, 3)[:, pad]
    stage = "after normalisation" if (values == 0).all() else f"before normalisation (|pad| up to {values.abs().max():.3f})"
    return (stage, float(values.abs().max()), 255, "bottom/right" if corner else "elsewhere")


def _is_top_left(valid: torch.Tensor) -> bool:
    h, w = int(valid.any(1).sum()), int(valid.any(0).sum())
    return bool(valid[:h, :w].all()) and not valid[h:].any() and not valid[:, w:].any()


def _pad_samples(cfg, size_divisor: int) -> list[tuple[torch.Tensor, torch.Tensor, bool]]:
    """Transformed crafted samples: a flipped and an unflipped one, padded by the transform (MMSeg)
    or that the batch will pad (two sizes, or sides off the divisor: Detectron2) where draws allow."""
    from pna.engine.build import build_train_transform_of

    transform = build_train_transform_of(cfg)
    g = torch.Generator().manual_seed(0)
    image = tv_tensors.Image(torch.randint(0, 256, (3, PAD_IMAGE, PAD_IMAGE), dtype=torch.uint8, generator=g))
    label = torch.ones(PAD_IMAGE, PAD_IMAGE, dtype=torch.long)
    label[:, PAD_IMAGE // 2:] = 2  # left half 1, right half 2: a flipped sample starts with 2
    drawn = []
    with torch.random.fork_rng(devices=[]):
        for seed in range(PAD_SEEDS):
            torch.manual_seed(seed)
            x, y = transform(image, tv_tensors.Mask(label))
            x, y = x.as_subclass(torch.Tensor), y.as_subclass(torch.Tensor).long()
            if cfg.data.pad == "crop" and not (y == 255).any():
                continue
            drawn.append((x, y, bool(y[0, 0] == 2)))
            pairs = [(a, b) for a in drawn if a[2] for b in drawn if not b[2]
                     and (cfg.data.pad == "crop" or a[1].shape != b[1].shape
                          or any(side % size_divisor for side in a[1].shape))]
            if pairs:
                return list(pairs[0])
    return drawn[:2]


def pad_facts(cfg, size_divisor: int) -> tuple:
    """Padding as the built pipeline does it: crafted images through the training transform (a
    flipped and an unflipped sample), then the Trainer's collate; (stage, image pad value, label pad
    value, position, target)."""
    from pna.engine.loader import padding_collate

    samples = _pad_samples(cfg, size_divisor)
    collate = padding_collate(size_divisor, 255)
    facts = _padding(samples, collate)
    if len(facts) == 1:
        return facts
    if cfg.data.pad == "crop":
        return facts + ("to the crop {}x{}".format(*samples[0][1].shape),)
    return facts + (f"to the batch's largest H, W rounded up to {size_divisor}",)


_DATA_FACTS: dict[tuple, dict] = {}


def data_facts(cfg, size_divisor: int) -> dict[str, Any]:
    """The training and test transforms of ``cfg`` as built, and the datasets' class facts (cached
    per data config: the rows of one setting share them)."""
    key = (json.dumps(dataclasses.asdict(cfg.data), sort_keys=True, default=list), cfg.eval.authors_classes,
           size_divisor)
    if key not in _DATA_FACTS:
        _DATA_FACTS[key] = _data_facts(cfg, size_divisor)
    return _DATA_FACTS[key]


def _data_facts(cfg, size_divisor: int) -> dict[str, Any]:
    from torchvision.transforms import v2

    from pna.data import info
    from pna.data.photometric import PhotometricDistortion
    from pna.data.transforms import CategoryAreaCrop, RandomRescale, RandomShortSideResize
    from pna.engine.build import build_eval_transform_of, build_train_transform_of

    steps = {type(t): t for t in build_train_transform_of(cfg).transforms}
    resize = steps.get(RandomRescale) or steps[RandomShortSideResize]
    crop, evaluation = steps[CategoryAreaCrop], build_eval_transform_of(cfg)
    photo, norm = steps.get(PhotometricDistortion), steps[v2.Normalize]
    d, dataset = cfg.data, info(cfg.data.dataset)
    return {
        "train_resize": ("ratio", tuple(sorted(resize.base_size)), resize.scale_range) if isinstance(
            resize, RandomRescale) else ("short", resize.short_sides, resize.max_size),
        "crop_size": crop.crop, "cat_max_ratio": (crop.cat_max_ratio, crop.tries),
        "flip_prob": steps[v2.RandomHorizontalFlip].p,
        "photometric_distortion": None if photo is None else (photo.brightness, photo.contrast, photo.saturation,
                                                              photo.hue),
        "normalize_mean_std": tuple(tuple(round(255 * v, 3) for v in values) for values in (norm.mean, norm.std)),
        "interpolation": ("train and test differ" if resize.antialias != evaluation.antialias
                          else f"bilinear, {'antialiased' if resize.antialias else 'no antialias'}"),
        "pad": pad_facts(cfg, size_divisor), "test_resize": (evaluation.short_side, evaluation.max_size),
        "num_classes": dataset.num_classes, "ignore_index": dataset.ignore_index,
        "eval_metric_classes": (tuple(info(d.eval_dataset or d.dataset).eval_classes), cfg.eval.authors_classes,
                                unknown_scoring(d.eval_dataset or d.dataset, {**d.options, **d.eval_options})),
    }


def unknown_scoring(dataset: str, options: dict) -> str | None:
    """DeepGlobe: what scoring does with "unknown" ground truth, read off a crafted 2x2 tile (black =
    unknown) through the evaluation dataset: "unknown kept" (a class of the matrix) or "unknown ignored"."""
    import tempfile
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from pna.data import build_dataset
    from pna.data.catalog import DEEPGLOBE_COLOURS, DEEPGLOBE_UNKNOWN

    if dataset != "deepglobe":
        return None
    with tempfile.TemporaryDirectory() as root:
        tiles = Path(root) / "land-train"
        tiles.mkdir()
        Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(tiles / "t_sat.jpg")
        mask = np.array([[DEEPGLOBE_UNKNOWN, DEEPGLOBE_COLOURS[0]]] * 2, dtype=np.uint8)
        Image.fromarray(mask).save(tiles / "t_mask.png")
        label = build_dataset("deepglobe", root, "test", ids=["t"], **options)[0]["label"]
    return "unknown ignored" if int(label[0, 0]) == 255 else "unknown kept"


def config_facts(cfg) -> dict[str, Any]:
    """What the Trainer reads straight from the config."""
    t = cfg.train
    return {"batch": t.batch_size, "grad_clip": cfg.optim.clip_grad, "test_mode": cfg.eval.mode,
            "precision": "fp16 autocast + loss scaling" if t.amp else "fp32", "eval_interval": t.eval_interval,
            "checkpoint_interval": t.checkpoint_interval}
