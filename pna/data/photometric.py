"""The photometric distortion both of the authors' code bases apply to training crops.

MMSeg's ``PhotoMetricDistortion`` and Detectron2's SSD colour augmentation do the same thing, each
step with probability 1/2: add a brightness offset in [-32, 32]; multiply by a contrast factor in
[0.5, 1.5] (either first or last, by a coin flip); in HSV, multiply the saturation by a factor in
[0.5, 1.5] and shift the hue by an integer on OpenCV's 0..180 hue scale, in [-18, 18] for
Detectron2 and [-18, 17] for MMSeg (numpy's randint excludes its upper end). They never
permute the colour channels (torchvision's ``RandomPhotometricDistort`` does, in ~42% of draws).
Randomness comes from torch's global generator, which the loader seeds per sample.

Example:
    >>> import torch
    >>> image = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8)
    >>> PhotometricDistortion()(image).dtype
    torch.uint8
"""
from __future__ import annotations

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2


def _coin() -> bool:
    return bool(torch.randint(2, ()))


def _uniform(low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand(()))


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """``(3, H, W)`` RGB in [0, 1] -> HSV with hue in [0, 1) (a turn), saturation and value in [0, 1]."""
    r, g, b = rgb.unbind(0)
    value, _ = rgb.max(0)
    chroma = value - rgb.min(0).values
    saturation = torch.where(value > 0, chroma / value.clamp_min(1e-12), torch.zeros_like(value))
    safe = chroma.clamp_min(1e-12)
    hue = torch.where(value == r, ((g - b) / safe) % 6,
                      torch.where(value == g, (b - r) / safe + 2, (r - g) / safe + 4))
    hue = torch.where(chroma > 0, hue / 6, torch.zeros_like(hue))
    return torch.stack((hue % 1.0, saturation, value))


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hsv`."""
    hue, saturation, value = hsv.unbind(0)
    k = (torch.tensor([5.0, 3.0, 1.0], device=hsv.device).view(3, 1, 1) + hue * 6) % 6
    return value - value * saturation * (torch.minimum(k, 4 - k).clamp(0, 1))


class PhotometricDistortion(v2.Transform):
    """Brightness, contrast, saturation and hue jitter of uint8 images; masks pass through.

    Args:
        brightness: largest additive offset (0..255 scale).
        contrast, saturation: (low, high) multiplicative factors.
        hue: the hue shift in OpenCV units (180 = a full turn): an inclusive integer range (low, high),
            or ``h`` for (-h, h).
    """

    def __init__(self, brightness: int = 32, contrast: tuple[float, float] = (0.5, 1.5),
                 saturation: tuple[float, float] = (0.5, 1.5), hue: int | tuple[int, int] = 18):
        super().__init__()
        low, high = (-hue, hue) if isinstance(hue, int) else (int(hue[0]), int(hue[1]))
        if low > high:
            raise ValueError(f"hue range must be (low, high) with low <= high, got {hue!r}")
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, (low, high)

    def make_params(self, flat_inputs: list) -> dict:
        # Draw every coin and factor up front, in a fixed order, so one seed gives one distortion.
        return {
            "brightness": _uniform(-self.brightness, self.brightness) if _coin() else None,
            "contrast_first": _coin(),
            "contrast": _uniform(*self.contrast) if _coin() else None,
            "saturation": _uniform(*self.saturation) if _coin() else None,
            "hue": int(torch.randint(self.hue[0], self.hue[1] + 1, ())) if _coin() else None,
        }

    def transform(self, inpt, params: dict):
        if not isinstance(inpt, tv_tensors.Image):
            return inpt
        x = inpt.as_subclass(torch.Tensor).float()
        if params["brightness"] is not None:
            x = (x + params["brightness"]).clamp(0, 255)
        if params["contrast_first"] and params["contrast"] is not None:
            x = (x * params["contrast"]).clamp(0, 255)
        if params["saturation"] is not None or params["hue"] is not None:
            hsv = rgb_to_hsv(x / 255)
            if params["saturation"] is not None:
                hsv[1] = (hsv[1] * params["saturation"]).clamp(0, 1)
            if params["hue"] is not None:
                hsv[0] = (hsv[0] + params["hue"] / 180) % 1.0
            x = hsv_to_rgb(hsv) * 255
        if not params["contrast_first"] and params["contrast"] is not None:
            x = (x * params["contrast"]).clamp(0, 255)
        return tv_tensors.wrap(x.round().clamp(0, 255).to(inpt.dtype), like=inpt)
