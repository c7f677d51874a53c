"""Swin Transformer backbones (timm) returning ``[res2, res3, res4, res5]`` in NCHW.

Swin-T (embed 96, depths 2-2-6-2) and Swin-B (embed 128, depths 2-2-18-2), window 7, as in the
paper. Segmentation conventions of the Swin/MMSeg segmentation code, which the authors used:

- any input whose sides are multiples of 32 is accepted (timm ``strict_img_size=False``; the
  attention masks are built for the actual size on each forward);
- every block keeps the 7x7 window and its cyclic shift of 3 whatever the feature size
  (``always_partition=True``; feature maps are padded up to a multiple of the window), as MMSeg
  does, instead of timm's default of shrinking the window to a small map;
- each returned stage output goes through its own LayerNorm (new, not in ImageNet checkpoints);
  the classification head and final norm are removed;
- stochastic depth 0.3 (the MMSeg UperNet-Swin configs).

``pretrained`` is a local timm/Microsoft ImageNet-1k checkpoint file (timm converts the original
layout); without one the backbone is randomly initialised and says so loudly.
"""
from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import Tensor, nn

from .resnet import check_pretrained_file

SWINS: dict[str, str] = {
    "swin_t": "swin_tiny_patch4_window7_224",
    "swin_b": "swin_base_patch4_window7_224",
}
SIZE_DIVISOR = 32


class SwinBackbone(nn.Module):
    """A timm Swin Transformer as a four-stage, channels-first feature extractor.

    Example:
        >>> import warnings; warnings.simplefilter("ignore")
        >>> net = SwinBackbone("swin_t")
        >>> [tuple(f.shape[1:]) for f in net(torch.zeros(1, 3, 64, 96))], net.strides
        ([(96, 16, 24), (192, 8, 12), (384, 4, 6), (768, 2, 3)], [4, 8, 16, 32])
    """

    def __init__(self, name: str = "swin_t", output_stride: int = 32, pretrained: str | Path | None = None,
                 drop_path_rate: float = 0.3):
        super().__init__()
        if name not in SWINS:
            raise ValueError(f"unknown Swin backbone {name!r}; expected one of {sorted(SWINS)}")
        if output_stride != 32:
            raise ValueError(f"Swin backbones have output stride 32 only, got output_stride={output_stride}")
        path = check_pretrained_file(pretrained, name)
        kwargs = {"pretrained_cfg_overlay": dict(file=str(path))} if path is not None else {}
        self.body = timm.create_model(
            SWINS[name], pretrained=path is not None, num_classes=0, strict_img_size=False,
            always_partition=True, drop_path_rate=drop_path_rate, **kwargs,
        )
        # The classifier and final norm are unused by dense prediction (they would get no gradient).
        self.body.prune_intermediate_layers(len(self.body.layers), prune_norm=True, prune_head=True)
        self.out_channels: list[int] = [int(info["num_chs"]) for info in self.body.feature_info]
        self.strides: list[int] = [int(info["reduction"]) for info in self.body.feature_info]
        self.norms = nn.ModuleList(nn.LayerNorm(c) for c in self.out_channels)
        self.name = name
        self.output_stride = output_stride

    def forward(self, images: Tensor) -> list[Tensor]:
        h, w = images.shape[-2:]
        if h % SIZE_DIVISOR or w % SIZE_DIVISOR:
            raise ValueError(f"{self.name}: input height and width must be multiples of {SIZE_DIVISOR}, "
                             f"got {h}x{w} (pad or crop the images)")
        feats = self.body.forward_intermediates(images, intermediates_only=True)  # NCHW already
        # LayerNorm over channels: move channels last, normalise, move back.
        return [norm(f.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous() for norm, f in zip(self.norms, feats)]


def build_swin(name: str, output_stride: int = 32, pretrained: str | Path | None = None) -> SwinBackbone:
    return SwinBackbone(name, output_stride, pretrained)
