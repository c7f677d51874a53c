"""SegFix's training targets from a label map (Yuan et al., ECCV 2020): which pixels are boundary
pixels, and in which of 8 directions the interior of each pixel's own region lies.

The construction follows the authors' released code (facts and lines in docs/refiners.md):

* every class region with at least :data:`MIN_CLASS_PIXELS` pixels gets its Euclidean distance
  transform (the distance of each of its pixels to the nearest pixel of another label; the
  image border is no boundary); smaller regions, and ignored pixels, keep distance 0;
* **boundary** = distance <= :data:`BOUNDARY_DISTANCE` (5 px), the distance truncated to whole
  pixels first as their stored uint8 map is (so sqrt(26) = 5.1 px counts); ignored pixels are ignored;
* **direction**: the gradient of that distance map, taken with the authors' 5 x 5 kernel
  (weights ``dx / (dx^2 + dy^2)``, zero padding) and zeroed outside the region, points from the
  boundary into the region's interior; its angle is stored in 2-degree steps as theirs is, then
  binned into 8 sectors of 45 degrees; bin k is centred on ``-180 + 45 k`` degrees and means the
  unit step :data:`DIRECTION_STEPS` [k] = (dy, dx).

scipy's ``distance_transform_edt`` and ``correlate`` do the work per image on the CPU, as the
authors' own offline generator does (no well-kept library computes SegFix's targets; the tests
check them against hand-made masks with known answers).

Example::

    >>> import torch
    >>> label = torch.zeros(1, 12, 24, dtype=torch.long); label[..., 12:] = 1   # a vertical edge
    >>> boundary, direction = segfix_targets(label)
    >>> boundary[0, 6, 6:18].tolist()            # 5 px on each side of the edge
    [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]
    >>> [DIRECTION_STEPS[d] for d in direction[0, 6, 11:13].tolist()]   # each into its own region
    [(0, -1), (0, 1)]
"""
from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

# openseg.pytorch (docs/refiners.md): a boundary pixel lies within 5 px of another label
# (dt_max_distance=5), regions under 100 px get no distance transform, the direction kernel is 5 x 5.
BOUNDARY_DISTANCE = 5
MIN_CLASS_PIXELS = 100
DIRECTION_KERNEL_SIZE = 5
ANGLE_STEP_DEG = 2  # the stored angle's resolution (their uint8 'dir_deg' with deg_reduce 2)
NUM_DIRECTIONS = 8
# Unit step (dy, dx) of each direction bin: bin k points at -180 + 45 k degrees of atan2(dy, dx).
DIRECTION_STEPS: tuple[tuple[int, int], ...] = ((0, -1), (-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1))
IGNORE = -1  # target value of ignored pixels


def gradient_kernels(size: int = DIRECTION_KERNEL_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """The (y, x) derivative kernels: weight ``d / (dx^2 + dy^2)`` at offset (dy, dx), 0 at the centre.

    >>> ky, kx = gradient_kernels(3)
    >>> kx.tolist()[1], ky.tolist()[0]
    ([-1.0, 0.0, 1.0], [-0.5, -1.0, -0.5])
    """
    if size < 3 or size % 2 == 0:
        raise ValueError(f"kernel size must be odd and >= 3, got {size}")
    half = size // 2
    dy, dx = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float64)
    norm = dx ** 2 + dy ** 2
    norm[half, half] = 1.0  # the centre weighs 0 either way
    return dy / norm, dx / norm


def angle_to_direction(angle_deg: np.ndarray) -> np.ndarray:
    """8 bins of 45 degrees: bin 0 holds (-180, -157.5] and (157.5, 180], bin k the sector
    (c - 22.5, c + 22.5] around c = -180 + 45 k.

    >>> angle_to_direction(np.array([180.0, -170.0, -135.0, -90.0, 0.0, 22.5, 22.6, 90.0])).tolist()
    [0, 0, 1, 2, 4, 4, 5, 6]
    """
    step = 360.0 / NUM_DIRECTIONS
    bins = np.ceil((angle_deg + 180.0 - step / 2) / step).astype(np.int64)  # (c - step/2, c + step/2] -> k
    return np.mod(bins, NUM_DIRECTIONS)


def _targets_of(label: np.ndarray, ignore_index: int) -> tuple[np.ndarray, np.ndarray]:
    """(boundary, direction) int64 maps of one (H, W) label map."""
    ky, kx = gradient_kernels()
    distance = np.zeros(label.shape, dtype=np.float64)
    grad = np.zeros((2, *label.shape), dtype=np.float64)
    classes, counts = np.unique(label, return_counts=True)
    for cls, count in zip(classes, counts):
        if cls == ignore_index or count < MIN_CLASS_PIXELS:
            continue
        region = label == cls
        inside = ndimage.distance_transform_edt(region)
        distance += inside
        for axis, kernel in enumerate((ky, kx)):  # correlation with zero padding, as a conv2d
            g = ndimage.correlate(inside, kernel, mode="constant", cval=0.0)
            grad[axis] += np.where(region, g, 0.0)
    angle = np.degrees(np.arctan2(grad[0], grad[1]))
    angle = ANGLE_STEP_DEG * np.floor((angle + 180.0) / ANGLE_STEP_DEG) - 180.0  # their stored 2-degree steps
    direction = angle_to_direction(angle)
    boundary = (np.floor(distance) <= BOUNDARY_DISTANCE).astype(np.int64)  # their uint8 map truncates
    ignored = label == ignore_index
    boundary[ignored] = IGNORE
    direction[ignored] = IGNORE
    return boundary, direction


def segfix_targets(labels: Tensor, ignore_index: int = 255) -> tuple[Tensor, Tensor]:
    """Boundary (0/1) and direction (0..7) targets of a (B, H, W) label batch, ``-1`` where ignored,
    on the labels' device."""
    if labels.dim() != 3:
        raise ValueError(f"labels must be (B, H, W), got shape {tuple(labels.shape)}")
    pairs = [_targets_of(x, ignore_index) for x in labels.detach().cpu().numpy()]
    boundary = torch.from_numpy(np.stack([b for b, _ in pairs])).to(labels.device)
    direction = torch.from_numpy(np.stack([d for _, d in pairs])).to(labels.device)
    return boundary, direction
