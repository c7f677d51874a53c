"""The test protocol of a row applied to any image, through the evaluation's own code.

``pna evaluate`` resizes an image's short side to the row's test size (long side capped;
:class:`pna.data.transforms.EvalTransform`), runs it whole or in sliding windows
(:func:`pna.engine.evaluate.predict_stage_logits`, which pads to the model's size divisor and crops
back), resizes every stage's logits bilinearly to the image's own size and takes the arg-max.
:func:`stage_labels` does exactly that, so :func:`predict` gives the labels ``pna evaluate`` scores
for the same image (tested; a dataset's images are read as stored, while :func:`predict` applies an
EXIF orientation tag: they differ only for an image that has one). ``mode`` and ``size`` change the
protocol when asked.

Example::

    >>> import warnings; warnings.simplefilter("ignore")
    >>> import numpy as np
    >>> from pna.configs import load_config
    >>> from pna.models import create_model
    >>> cfg = load_config("voc/fcn_r50_os32_pna", "smoke")
    >>> net = create_model(cfg.model.name, 7, **cfg.model.overrides).eval()
    >>> protocol = protocol_of(cfg, net, size=48)
    >>> protocol.short_side, protocol.mode, tuple(protocol.prepare(np.zeros((60, 90, 3), np.uint8)).shape)
    (48, 'whole', (3, 48, 72))
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from pna.configs import Config

MODES = ("whole", "slide")


@dataclass(frozen=True)
class Protocol:
    """How an image is run: test resize (short side, long-side cap), whole or sliding windows."""

    mode: str
    crop: tuple[int, int]           # sliding window (h, w)
    stride: tuple[int, int]         # sliding window step (h, w)
    short_side: int | None          # None: the image's own size
    max_size: int | None
    antialias: bool
    divisor: int                    # inputs are zero-padded to a multiple of it, the logits cropped back

    def to_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        size = "own size" if self.short_side is None else f"short side {self.short_side}" + (
            f", long side at most {self.max_size}" if self.max_size else "")
        windows = f" windows {self.crop[0]}x{self.crop[1]} every {self.stride[0]}x{self.stride[1]}" if self.mode == "slide" else ""
        return f"{self.mode}{windows}, {size}, padded to a multiple of {self.divisor}"

    def prepare(self, rgb: np.ndarray) -> Tensor:
        """RGB uint8 HxWx3 -> the normalised float 3xhxw the model is run on (the evaluation's transform)."""
        from pna.data.transforms import build_eval_transform
        from pna.inference.inputs import rgb_tensor
        from torchvision import tv_tensors

        transform = build_eval_transform(self.short_side, self.max_size, self.antialias)
        image, _ = transform(tv_tensors.Image(rgb_tensor(rgb)), None)
        return image.as_subclass(torch.Tensor)


def protocol_of(cfg: Config, net: nn.Module, mode: str | None = None, size: int | str | None = None) -> Protocol:
    """The test protocol of ``cfg`` for ``net``; ``mode`` (whole / slide) and ``size`` (a short side
    in pixels, or ``"original"`` for the image's own size) replace the row's when given."""
    from pna.models.segmentor import size_divisor

    if mode is not None and mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    short, cap = cfg.data.eval_short_side, cfg.data.eval_max_size
    if size is not None:
        if str(size).lower() in ("original", "none", "0"):
            short, cap = None, None
        else:
            try:
                short = int(size)
            except (TypeError, ValueError):
                short = -1
            if short < 1:
                raise ValueError(f"size must be a positive short side in pixels or 'original', got {size!r}")
    return Protocol(mode=mode or cfg.eval.mode, crop=tuple(cfg.eval.crop), stride=tuple(cfg.eval.stride),
                    short_side=short, max_size=cap, antialias=cfg.data.antialias, divisor=size_divisor(net))


def stage_names_of(net: nn.Module, stages: str | Sequence[str] | None) -> list[str]:
    """``"final"`` (or None): the last stage; ``"all"``: every stage; else names such as ``"P0,P4"``."""
    names = list(net.stage_names)
    if stages is None or stages == "final":
        return names[-1:]
    if stages == "all":
        return names
    wanted = [s.strip() for s in stages.split(",")] if isinstance(stages, str) else list(stages)
    unknown = [s for s in wanted if s not in names]
    if unknown or not wanted:
        raise ValueError(f"stages {unknown or wanted}: this model's stages are {names} (or 'final', 'all')")
    return wanted


@torch.no_grad()
def stage_labels(net: nn.Module, images: Tensor, sizes: Sequence[Sequence[int]], protocol: Protocol,
                 stages: Sequence[str]) -> list[dict[str, Tensor]]:
    """Per image of the batch ``images`` (B, 3, h, w), the arg-maxed labels of each stage at that
    image's own size ``sizes[i]`` (H, W), as ``pna evaluate`` computes them (CPU LongTensors)."""
    from pna.engine.evaluate import predict_stage_logits
    from pna.models.resize import resize_to

    device = next(net.parameters()).device
    logits = predict_stage_logits(net, images.to(device), protocol.mode, protocol.crop, protocol.stride, stages)
    return [{name: resize_to(value[i:i + 1], tuple(size)).argmax(1)[0].cpu() for name, value in logits.items()}
            for i, size in enumerate(sizes)]


def predict(model, image, stages: str | Sequence[str] | None = "final", mode: str | None = None,
            size: int | str | None = None) -> dict[str, np.ndarray]:
    """``{stage: labels}`` (uint8 HxW train ids at the image's own size) of a :class:`LoadedModel`
    for one image: a path, or an RGB uint8 HxWx3 array (as read, orientation applied)."""
    from pna.inference.inputs import read_rgb

    rgb = read_rgb(image)[0] if not isinstance(image, np.ndarray) else image
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"image array must be RGB uint8 HxWx3, got {rgb.dtype} {rgb.shape}")
    protocol = protocol_of(model.config, model.net, mode, size)
    names = stage_names_of(model.net, stages)
    labels = stage_labels(model.net, protocol.prepare(rgb)[None], [rgb.shape[:2]], protocol, names)[0]
    dtype = np.uint8 if model.dataset.num_classes <= 256 else np.int32
    return {name: value.numpy().astype(dtype) for name, value in labels.items()}
