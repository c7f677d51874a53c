"""What a SegFix run is scored on when it ends: its own two predictions against its targets.

A SegFix network predicts no classes (it refines any segmentation's: :mod:`pna.analysis.refiners`
scores it that way on every coarse head), so the end of its training records how well it does
its two jobs on the evaluation split, its targets built from the labels as in training
(:func:`pna.refiners.segfix_targets`):

* boundary precision, recall, F1 and IoU of the pixels it calls boundary (softmax > 0.5, the
  test-time rule) against the boundary target (labelled pixels only);
* direction accuracy: the share of the target boundary pixels it also calls boundary whose
  arg-max direction is the target's bin (the pixels whose offsets move labels at test time).

The maps come from :func:`segfix_maps` in the config's test mode: the whole image, or (SegFix's
own Cityscapes test, docs/refiners.md) windows of the training crop every third of it, the
boundary probabilities and direction logits averaged where windows overlap. The result has the
shape of :func:`pna.engine.evaluate.evaluate_model`'s, with no stages (``stages`` empty, ``mIoU``
None) and these numbers under ``"segfix"``; all fractions.
"""
from __future__ import annotations

import torch
from torch import nn

from typing import Sequence

import torch.nn.functional as F

from pna.engine import distributed as dist
from pna.engine.loader import eval_loader
from pna.models.segfix import BOUNDARY_THRESHOLD, SegFixNet
from pna.refiners.segfix_targets import segfix_targets


def is_segfix(model: nn.Module) -> bool:
    return isinstance(getattr(model, "module", model), SegFixNet)


def _ratio(a: int, b: int) -> float | None:
    return a / b if b > 0 else None


def _maps(net: SegFixNet, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    maps = net.predict_maps(images)
    return maps["boundary"].float().softmax(1)[:, 1:], maps["direction"].float()


@torch.no_grad()
def segfix_maps(model: nn.Module, images: torch.Tensor, mode: str = "whole", crop: Sequence[int] = (512, 512),
                stride: Sequence[int] = (170, 170)) -> dict[str, torch.Tensor]:
    """``{"boundary": probability (B, H, W), "direction": logits (B, 8, H, W)}`` at the image size;
    ``mode="slide"``: windows of ``crop`` every ``stride``, the last aligned with the border, an
    image smaller than ``crop`` zero-padded to it (cropped away after)."""
    net = getattr(model, "module", model)
    if mode == "whole":
        boundary, direction = _maps(net, images)
        return {"boundary": boundary[:, 0], "direction": direction}
    if mode != "slide":
        raise ValueError(f"mode must be 'whole' or 'slide', got {mode!r}")
    (ch, cw), (sh, sw) = crop, stride
    h, w = images.shape[-2:]
    padded = F.pad(images, (0, max(cw - w, 0), 0, max(ch - h, 0)))
    ph, pw = padded.shape[-2:]
    tops = sorted(set(range(0, ph - ch + 1, sh)) | {ph - ch})
    lefts = sorted(set(range(0, pw - cw + 1, sw)) | {pw - cw})
    sums = images.new_zeros(images.shape[0], 1 + 8, ph, pw)
    count = images.new_zeros(1, 1, ph, pw)
    for top in tops:
        for left in lefts:
            boundary, direction = _maps(net, padded[..., top:top + ch, left:left + cw])
            sums[..., top:top + ch, left:left + cw] += torch.cat([boundary, direction], 1)
            count[..., top:top + ch, left:left + cw] += 1
    mean = (sums / count)[..., :h, :w]
    return {"boundary": mean[:, 0], "direction": mean[:, 1:]}


@torch.no_grad()
def evaluate_segfix(model: nn.Module, dataset, device: torch.device | str = "cpu", workers: int = 0,
                    mode: str = "whole", crop: Sequence[int] = (512, 512), stride: Sequence[int] = (170, 170)) -> dict:
    """Boundary and direction quality of a SegFix network over ``dataset`` (sharded over DDP ranks)."""
    net = getattr(model, "module", model)
    was_training = net.training
    net.eval()
    # true positives, predicted, target boundary pixels; direction hits among the found target pixels
    counts = torch.zeros(4, dtype=torch.int64, device=device)
    loader = eval_loader(dataset, 1, workers, dist.world_size(), dist.rank())
    for batch in loader:
        images, labels = batch["image"], batch["label"]
        pairs = zip(images, labels) if isinstance(images, list) else [(images, labels)]
        for image, label in pairs:
            image = image.to(device).reshape(-1, *image.shape[-3:])
            label = label.to(device).reshape(-1, *label.shape[-2:]).long()
            maps = segfix_maps(net, image, mode, crop, stride)
            if maps["boundary"].shape[-2:] != label.shape[-2:]:  # an image resized for the test
                maps = {"boundary": F.interpolate(maps["boundary"][:, None], size=label.shape[-2:], mode="bilinear",
                                                  align_corners=True)[:, 0],
                        "direction": F.interpolate(maps["direction"], size=label.shape[-2:], mode="bilinear",
                                                   align_corners=True)}
            target, direction = segfix_targets(label, dataset.ignore_index)
            labelled = target >= 0
            predicted = (maps["boundary"] > BOUNDARY_THRESHOLD) & labelled
            actual = (target == 1) & labelled
            found = predicted & actual
            hits = found & (maps["direction"].argmax(1) == direction)
            counts += torch.stack([found.sum(), predicted.sum(), actual.sum(), hits.sum()])
    num_images = torch.tensor([len(loader.dataset)], device=device)
    if dist.is_initialized():
        torch.distributed.all_reduce(counts)
        torch.distributed.all_reduce(num_images)
    net.train(was_training)
    tp, predicted, actual, hits = counts.tolist()
    precision, recall = _ratio(tp, predicted), _ratio(tp, actual)
    f1 = (2 * precision * recall / (precision + recall) if precision is not None and recall is not None
          and precision + recall > 0 else None)
    scores = {"boundary_precision": precision, "boundary_recall": recall, "boundary_f1": f1,
              "boundary_iou": _ratio(tp, predicted + actual - tp), "direction_accuracy": _ratio(hits, tp),
              "boundary_pixels": actual}
    return {"stages": {}, "final_stage": None, "mIoU": None, "segfix": scores, "num_images": int(num_images)}
