"""DenseCRF (Krähenbühl & Koltun, NIPS 2011) on the softmax of a coarse prediction: the classic
post-processing baseline of DeepLab v1/v2.

The mean-field inference is Krähenbühl's own C++ through ``pydensecrf2`` (the maintained fork of
the ``pydensecrf`` bindings, which DeepLab re-implementations and SegFix's authors install; pinned
in pyproject.toml, it builds from source here in about a minute). The energy:

* unary: ``-log p`` of the softmax of the coarse logits at the image size;
* pairwise: a Potts appearance kernel of weight ``w1`` over position (``theta_alpha`` px) and RGB
  (``theta_beta``), plus a Potts smoothness kernel of weight ``w2`` over position (``theta_gamma``);
* ``iterations`` mean-field steps, then the arg-max.

:data:`DEEPLAB_V2` holds DeepLab v2's parameters for its ResNet-101 VOC model, the defaults here
(docs/refiners.md gives their source and DeepLab v1's LargeFOV values, :data:`DEEPLAB_V1`).
Nobody published Cityscapes parameters for it; the same ones serve every dataset, as stated there.

Example::

    >>> import numpy as np
    >>> image = np.full((5, 5, 3), 128, np.uint8)               # one uniform region ...
    >>> probs = np.stack([np.full((5, 5), 0.7, np.float32), np.full((5, 5), 0.3, np.float32)])
    >>> probs[:, 2, 2] = 0.45, 0.55                                # ... with one noisy pixel
    >>> int(probs.argmax(0)[2, 2]), int(dense_crf(image, probs)[2, 2])
    (1, 0)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor

PROBABILITY_FLOOR = 1e-8  # keeps -log p finite where the softmax underflows


@dataclass(frozen=True)
class DenseCRFParams:
    """``w1`` / ``theta_alpha`` / ``theta_beta``: the appearance kernel; ``w2`` / ``theta_gamma``:
    the smoothness kernel (the notation of the DeepLab v2 paper)."""

    iterations: int = 10
    w1: float = 4.0
    theta_alpha: float = 67.0
    theta_beta: float = 3.0
    w2: float = 3.0
    theta_gamma: float = 1.0

    def to_dict(self) -> dict:
        return asdict(self)


DEEPLAB_V2 = DenseCRFParams()  # DeepLab v2, ResNet-101, VOC 2012 (docs/refiners.md)
DEEPLAB_V1 = DenseCRFParams(iterations=10, w1=4.0, theta_alpha=49.0, theta_beta=5.0, w2=3.0, theta_gamma=3.0)
CRF_PARAMS = {"deeplab_v2": DEEPLAB_V2, "deeplab_v1": DEEPLAB_V1}  # by the name a notebook parameter gives


def crf_params(name: str | DenseCRFParams) -> DenseCRFParams:
    """Parameters by name (:data:`CRF_PARAMS`), or as given."""
    if isinstance(name, DenseCRFParams):
        return name
    if name not in CRF_PARAMS:
        raise ValueError(f"crf: unknown DenseCRF parameters {name!r}; expected one of {sorted(CRF_PARAMS)}")
    return CRF_PARAMS[name]


def dense_crf(image: np.ndarray, probs: np.ndarray, params: DenseCRFParams = DEEPLAB_V2) -> np.ndarray:
    """Class ids (H, W) int64 from an RGB ``image`` (H, W, 3) uint8 and class probabilities
    ``probs`` (C, H, W) of the same size."""
    import pydensecrf.densecrf as dcrf

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) uint8, got {image.shape} {image.dtype}")
    classes, h, w = probs.shape
    if (h, w) != image.shape[:2]:
        raise ValueError(f"probabilities {probs.shape[1:]} and image {image.shape[:2]} differ in size")
    if params.iterations < 0:
        raise ValueError(f"iterations must be >= 0, got {params.iterations}")
    crf = dcrf.DenseCRF2D(w, h, classes)
    unary = -np.log(np.clip(probs, PROBABILITY_FLOOR, 1.0)).reshape(classes, -1)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    crf.addPairwiseGaussian(sxy=params.theta_gamma, compat=params.w2)
    crf.addPairwiseBilateral(sxy=params.theta_alpha, srgb=params.theta_beta, rgbim=np.ascontiguousarray(image),
                             compat=params.w1)
    q = np.asarray(crf.inference(params.iterations)).reshape(classes, h, w)
    return q.argmax(0).astype(np.int64)


def crf_refine(images: np.ndarray, logits: Tensor, params: DenseCRFParams = DEEPLAB_V2) -> Tensor:
    """DenseCRF on a batch: ``images`` (B, H, W, 3) uint8 and ``logits`` (B, C, H, W) -> class ids
    (B, H, W) on the logits' device."""
    probs = logits.detach().float().softmax(1).cpu().numpy()
    labels = [dense_crf(image, p, params) for image, p in zip(images, probs)]
    return torch.from_numpy(np.stack(labels)).to(logits.device)
