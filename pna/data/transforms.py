"""Joint image/label transforms of the paper, built from ``torchvision.transforms.v2``.

Training: a random resize -> a random crop, re-drawn while one class covers more than
``cat_max_ratio`` of it (a side shorter than the crop is taken whole) -> horizontal flip ->
photometric distortion (:mod:`pna.data.photometric`, no channel swap) -> float + ImageNet
normalisation -> (``pad="crop"``, MMSeg) padding to the crop size at the bottom/right, image 0 and
label 255, AFTER normalisation, so that the pad is exactly the normalised mean colour in every
sample, flipped or distorted. With ``pad="batch"`` (Detectron2) samples keep their size and
:func:`pna.data.collate.pad_collate` pads the batch.
The random resize is MMSeg's (a factor in ``scale_range`` times the scale that fits the image into
``base_size``, or the image itself) or Detectron2's (``short_sides``: the short side drawn from a
list, the long side capped at ``max_size``).
Evaluation: the image's short side resized to ``short_side`` with the long side capped at
``max_size`` (the label is left at its original size: metrics are computed there, after resizing
the logits to ``label.shape``).

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
from .photometric import PhotometricDistortion

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Crop draws under the category-area constraint: Detectron2 keeps its 10th draw; MMSeg checks 10
# draws and keeps an 11th unchecked one (docs/authors_settings.md, "Augmentation").
CROP_TRIES = 10
PAD_MODES = ("crop", "batch")


def _size(flat_inputs: list[Any]) -> tuple[int, int]:
    return tuple(F.get_size(next(x for x in flat_inputs if isinstance(x, (tv_tensors.Image, tv_tensors.Mask)))))


def short_side_size(h: int, w: int, short: int, max_size: int | None) -> list[int]:
    """(h, w) after resizing the short side to ``short`` with the long side capped at ``max_size``.

    >>> short_side_size(2448, 2448, 1024, 2048), short_side_size(375, 500, 512, 2048)
    ([1024, 1024], [512, 683])
    """
    scale = short / min(h, w)
    if max_size is not None and max(h, w) * scale > max_size:
        scale = max_size / max(h, w)
    return [max(1, int(h * scale + 0.5)), max(1, int(w * scale + 0.5))]


class RandomRescale(v2.Transform):
    """Resize image and mask together by a random factor drawn uniformly from ``scale_range``.

    With ``base_size=(h, w)`` the factor multiplies the scale that fits the image into that box
    (long side to the box's long side, short side to its short side, whichever is smaller), as in
    the mmseg-style ``img_scale`` + ``ratio_range``; without it, the factor is relative to the
    image's own size. Masks are resized with nearest neighbour (torchvision's Mask kernel); images
    bilinearly, with antialiasing when shrinking unless ``antialias=False`` (MMSeg's cv2 resize).
    """

    def __init__(self, scale_range: tuple[float, float] = (0.5, 2.0), base_size: tuple[int, int] | None = None,
                 antialias: bool = True):
        super().__init__()
        low, high = scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must be 0 < low <= high, got {scale_range}")
        self.scale_range = (float(low), float(high))
        self.base_size = base_size
        self.antialias = antialias

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _size(flat_inputs)
        low, high = self.scale_range
        factor = low + (high - low) * float(torch.rand(()))
        if self.base_size is not None:
            factor *= min(max(self.base_size) / max(h, w), min(self.base_size) / min(h, w))
        return {"size": [max(1, round(h * factor)), max(1, round(w * factor))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            return F.resize(inpt, params["size"], antialias=self.antialias)
        return inpt


class RandomShortSideResize(v2.Transform):
    """Detectron2's training resize: the short side drawn from ``short_sides``, the long side capped."""

    def __init__(self, short_sides: tuple[int, ...], max_size: int | None = None, antialias: bool = True):
        super().__init__()
        if not short_sides or min(short_sides) < 1:
            raise ValueError(f"short_sides must list positive sizes, got {short_sides}")
        self.short_sides, self.max_size, self.antialias = tuple(short_sides), max_size, antialias

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        short = self.short_sides[int(torch.randint(len(self.short_sides), ()))]
        return {"size": short_side_size(*_size(flat_inputs), short, self.max_size)}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            return F.resize(inpt, params["size"], antialias=self.antialias)
        return inpt


class CategoryAreaCrop(v2.Transform):
    """Random ``crop`` (h, w), drawn up to ``tries`` times until a window holds two classes or more,
    none covering ``cat_max_ratio`` or more of its labelled (not ``ignore_index``) pixels (MMSeg's
    ``cat_max_ratio``, Detectron2's category area constraint; None or 1: the first draw, as a
    ratio of 1 is "off" in both code bases); the last draw is kept unchecked. A side shorter than the
    crop is taken whole (no padding here: :class:`PadTo` or the collate pads after normalisation).
    """

    def __init__(self, crop: tuple[int, int], cat_max_ratio: float | None = None, ignore_index: int = IGNORE_INDEX,
                 tries: int = CROP_TRIES):
        super().__init__()
        if cat_max_ratio is not None and not 0 < cat_max_ratio <= 1:
            raise ValueError(f"cat_max_ratio must be in (0, 1] or None, got {cat_max_ratio}")
        if tries < 1:
            raise ValueError(f"crop tries must be >= 1, got {tries}")
        self.crop, self.cat_max_ratio, self.ignore_index = tuple(crop), cat_max_ratio, ignore_index
        self.tries = tries

    def _draw(self, h: int, w: int) -> tuple[int, int]:
        return (int(torch.randint(max(h - self.crop[0], 0) + 1, ())),
                int(torch.randint(max(w - self.crop[1], 0) + 1, ())))

    def _balanced(self, label: torch.Tensor, top: int, left: int) -> bool:
        window = label[..., top:top + self.crop[0], left:left + self.crop[1]].flatten()
        counts = torch.bincount(window[window != self.ignore_index].long())
        counts = counts[counts > 0]
        return len(counts) > 1 and counts.max().item() / counts.sum().item() < self.cat_max_ratio

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _size(flat_inputs)
        top, left = self._draw(h, w)
        masks = [x for x in flat_inputs if isinstance(x, tv_tensors.Mask)]
        # a ratio of 1 switches the check off: mmsegmentation:mmseg/datasets/pipelines/transforms.py:687,
        # facebookresearch/detectron2@47d8ed7a1bd9:detectron2/data/transforms/augmentation_impl.py:463
        if self.cat_max_ratio is not None and self.cat_max_ratio < 1 and masks:
            for _ in range(self.tries - 1):
                if self._balanced(masks[0], top, left):
                    break
                top, left = self._draw(h, w)
        return {"box": (top, left, min(h, self.crop[0]), min(w, self.crop[1]))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            return inpt
        return F.crop(inpt, *params["box"])


class PadTo(v2.Transform):
    """Pad to ``size`` (h, w) at the bottom and right: images with 0, masks with ``ignore_index``.

    Placed after normalisation, the image pad is the mean colour exactly (MMSeg's ``Pad``).

    >>> image = tv_tensors.Image(torch.ones(3, 2, 3)); mask = tv_tensors.Mask(torch.zeros(2, 3, dtype=torch.long))
    >>> x, y = PadTo((4, 4))(image, mask)
    >>> x[0].tolist(), y.tolist()[-1]
    ([[1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]], [255, 255, 255, 255])
    """

    def __init__(self, size: tuple[int, int], ignore_index: int = IGNORE_INDEX):
        super().__init__()
        self.size, self.ignore_index = tuple(size), ignore_index

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = _size(flat_inputs)
        return {"pad": [0, 0, max(self.size[1] - w, 0), max(self.size[0] - h, 0)]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if not isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)) or not any(params["pad"]):
            return inpt
        return F.pad(inpt, params["pad"], fill=self.ignore_index if isinstance(inpt, tv_tensors.Mask) else 0)


def _to_normalized_float() -> list[v2.Transform]:
    # A single dtype converts images only; masks keep their integer ids.
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]


def build_train_transform(
    crop_size: tuple[int, int] | int,
    scale_range: tuple[float, float] = (0.5, 2.0),
    flip: bool = True,
    photometric: bool = True,
    base_size: tuple[int, int] | None = None,
    short_sides: tuple[int, ...] | None = None,
    max_size: int | None = None,
    cat_max_ratio: float | None = None,
    pad: str = "crop",
    antialias: bool = True,
    crop_tries: int = CROP_TRIES,
    hue: tuple[int, int] = (-18, 18),
) -> v2.Compose:
    """The training pipeline.

    ``short_sides`` selects Detectron2's resize (short side from the list, long side capped at
    ``max_size``); otherwise MMSeg's (``scale_range`` x the scale fitting ``base_size``, if given).
    ``pad="crop"``: every output is ``crop_size`` (padded after normalisation, so default collate
    works); ``pad="batch"``: outputs are at most ``crop_size`` and need :func:`pna.data.collate.pad_collate`.
    ``antialias``, ``crop_tries`` and ``hue`` (inclusive integer range of the hue shift) are the
    resize, crop and photometric details in which the authors' two code bases differ.
    """
    crop = (crop_size, crop_size) if isinstance(crop_size, int) else tuple(crop_size)
    if len(crop) != 2 or min(crop) < 1:
        raise ValueError(f"crop_size must be (height, width) > 0, got {crop_size}")
    if pad not in PAD_MODES:
        raise ValueError(f"pad must be one of {PAD_MODES}, got {pad!r}")
    resize = (RandomShortSideResize(short_sides, max_size, antialias) if short_sides
              else RandomRescale(scale_range, base_size, antialias))
    steps: list[v2.Transform] = [resize, CategoryAreaCrop(crop, cat_max_ratio, tries=crop_tries)]
    if flip:
        steps.append(v2.RandomHorizontalFlip(p=0.5))
    if photometric:
        steps.append(PhotometricDistortion(hue=hue))
    steps += _to_normalized_float()
    if pad == "crop":
        steps.append(PadTo(crop))
    return v2.Compose(steps)


class EvalTransform:
    """Resize the image's short side to ``short_side`` (long side capped at ``max_size``) and
    normalise; keep the label as is."""

    def __init__(self, short_side: int | None = None, max_size: int | None = None, antialias: bool = True):
        if short_side is not None and short_side < 1:
            raise ValueError(f"short_side must be a positive int or None, got {short_side}")
        if max_size is not None and max_size < 1:
            raise ValueError(f"max_size must be a positive int or None, got {max_size}")
        self.short_side, self.max_size, self.antialias = short_side, max_size, antialias
        self.normalize = v2.Compose(_to_normalized_float())

    def __call__(self, image: tv_tensors.Image, label: tv_tensors.Mask) -> tuple[torch.Tensor, torch.Tensor]:
        if self.short_side:
            image = F.resize(image, short_side_size(*image.shape[-2:], self.short_side, self.max_size),
                             antialias=self.antialias)
        return self.normalize(image), label

    def __repr__(self) -> str:
        return f"EvalTransform(short_side={self.short_side}, max_size={self.max_size}, antialias={self.antialias})"


def build_eval_transform(short_side: int | None = None, max_size: int | None = None,
                         antialias: bool = True) -> EvalTransform:
    """The test-time pipeline: whole image, short side resized to ``short_side`` (long side capped
    at ``max_size``) when given; ``antialias=False``: MMSeg's cv2 bilinear resize."""
    return EvalTransform(short_side, max_size, antialias)


def denormalize(image: torch.Tensor) -> torch.Tensor:
    """Undo the ImageNet normalisation of a (B)x3xHxW tensor; values clamped to [0, 1] for plotting."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return (image * std + mean).clamp(0, 1)
