"""Joint image/label transforms of the paper, built from ``torchvision.transforms.v2``.

Training: random rescale by a factor in ``scale_range`` -> random crop to a fixed size (image
padded with 0, label with 255) -> horizontal flip -> photometric distortion -> float + ImageNet
normalisation. Evaluation: the image's short side resized to ``short_side`` (the label is left at its
original size: metrics are computed there, after resizing the logits to ``label.shape``).

Example:
    >>> import torch
    >>> from torchvision import tv_tensors
    >>> t = build_train_transform((64, 64))
    >>> img = tv_tensors.Image(torch.zeros(3, 50, 80, dtype=torch.uint8))
    >>> lab = tv_tensors.Mask(torch.zeros(50, 80, dtype=torch.uint8))
    >>> x, y = t(img, lab)
    >>> tuple(x.shape), tuple(y.shape), x.dtype
    ((3, 64, 64), (64, 64), torch.float32)
"""
from __future__ import annotations

from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from .catalog import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class RandomRescale(v2.Transform):
    """Resize image and mask together by a random factor drawn uniformly from ``scale_range``.

    With ``base_size=(h, w)`` the factor multiplies the scale that fits the image into that box
    (long side to the box's long side, short side to its short side, whichever is smaller), as in
    the mmseg-style ``img_scale`` + ``ratio_range``; without it, the factor is relative to the
    image's own size. Masks are resized with nearest neighbour (torchvision's Mask kernel).
    """

    def __init__(self, scale_range: tuple[float, float] = (0.5, 2.0), base_size: tuple[int, int] | None = None):
        super().__init__()
        low, high = scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must be 0 < low <= high, got {scale_range}")
        self.scale_range = (float(low), float(high))
        self.base_size = base_size

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = F.get_size(next(x for x in flat_inputs if isinstance(x, (tv_tensors.Image, tv_tensors.Mask))))
        low, high = self.scale_range
        factor = low + (high - low) * float(torch.rand(()))
        if self.base_size is not None:
            factor *= min(max(self.base_size) / max(h, w), min(self.base_size) / min(h, w))
        return {"size": [max(1, round(h * factor)), max(1, round(w * factor))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            return F.resize(inpt, params["size"], antialias=True)
        return inpt


def _to_normalized_float() -> list[v2.Transform]:
    # A single dtype converts images only; masks keep their integer ids.
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def build_train_transform(
    crop_size: tuple[int, int] | int,
    scale_range: tuple[float, float] = (0.5, 2.0),
    flip: bool = True,
    photometric: bool = True,
    base_size: tuple[int, int] | None = None,
) -> v2.Compose:
    """The training pipeline; output crops are always ``crop_size`` (h, w), so default collate works."""
    crop = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
    if len(crop) != 2 or min(crop) < 1:
        raise ValueError(f"crop_size must be (height, width) > 0, got {crop_size}")
    steps: list[v2.Transform] = [
        RandomRescale(scale_range, base_size),
        v2.RandomCrop(crop, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}),
    ]
    if flip:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    if photometric:
        steps.append(v2.RandomPhotometricDistort(p=0.5))
    return v2.Compose(steps + _to_normalized_float())


class EvalTransform:
    """Resize the image's short side to ``short_side`` (if given) and normalise; keep the label as is."""

    def __init__(self, short_side: int | None = None):
        if short_side is not None and short_side < 1:
            raise ValueError(f"short_side must be a positive int or None, got {short_side}")
        self.short_side = short_side
        resize = [v2.Resize(short_side, antialias=True)] if short_side else []
        self.image_transform = v2.Compose(resize + _to_normalized_float())

    def __call__(self, image: tv_tensors.Image, label: tv_tensors.Mask) -> tuple[torch.Tensor, torch.Tensor]:
        return self.image_transform(image), label

    def __repr__(self) -> str:
        return f"EvalTransform(short_side={self.short_side})"


def build_eval_transform(short_side: int | None = None) -> EvalTransform:
    """The test-time pipeline: whole image, short side resized to ``short_side`` when given."""
    return EvalTransform(short_side)


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """Undo the ImageNet normalisation of a (B)x3xHxW tensor; values clamped to [0, 1] for plotting."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * std + mean).clamp(0, 1)
