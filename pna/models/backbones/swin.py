"""Swin Transformer backbones (timm) returning ``[res2, res3, res4, res5]`` in NCHW.

Swin-T (embed 96, depths 2-2-6-2) and Swin-B (embed 128, depths 2-2-18-2), window 7, as in the
paper. Segmentation conventions of the Swin/MMSeg segmentation code, which the authors used:

- any input whose sides are multiples of 32 is accepted (timm ``strict_img_size=False``; the
  attention masks are built for the actual size on each forward); ``size_divisor = 32`` tells
  :class:`pna.models.segmentor.Segmentor` to pad other sizes for inference (mmseg's way) and crop back;
- every block keeps the 7x7 window and its cyclic shift of 3 whatever the feature size
  (``always_partition=True``) instead of timm's default of shrinking the window on a small map;
- a shifted block pads its map to a multiple of the window first and then rolls it, with the
  attention mask drawn over the padded map, as MMSeg's ``ShiftWindowMSA`` does (the authors'
  copy: ``mmsegmentation:mmseg/models/backbones/swin.py:186-211``; docs/authors_audit.csv,
  ``swin_shifted_windows``). timm 1.0.31 rolls first and pads after, so rows the roll wraps round
  share a window and a mask region with rows they do not border: :class:`PadThenShiftBlock` keeps
  timm's modules and parameters (timm-format and the authors' files load as before) and runs them
  in MMSeg's order. At a 512 crop every stage (128, 64, 32, 16) needs padding;
- each returned stage output goes through its own LayerNorm (new, not in ImageNet checkpoints);
  the classification head and final norm are removed;
- stochastic depth 0.3 (the MMSeg UperNet-Swin configs).

``pretrained`` is Microsoft's official ImageNet-1k checkpoint, a timm-format file or a ``timm:``
hub name (:mod:`pna.models.backbones.weights`); without one the backbone is randomly initialised
and says so loudly (or refuses, with ``allow_random_init=False``).
"""
from __future__ import annotations

from pathlib import Path

import timm
import torch
import torch.nn.functional as F
from timm.models.swin_transformer import SwinTransformerBlock, window_partition, window_reverse
from torch import Tensor, nn

from .weights import LoadReport, load_pretrained, require_weights_or_warn

SWINS: dict[str, str] = {
    "swin_t": "swin_tiny_patch4_window7_224",
    "swin_b": "swin_base_patch4_window7_224",
}
SIZE_DIVISOR = 32


class PadThenShiftBlock(SwinTransformerBlock):
    """timm's Swin block with MMSeg's shifted-window order: pad to the window, roll, mask, attend.

    Only ``_attn`` differs from timm's (which rolls the unpadded map and pads afterwards); the
    parameters, their names and the non-shifted blocks are timm's.
    """

    def _attn(self, x: Tensor) -> Tensor:
        _, h, w, channels = x.shape
        win_h, win_w = self.window_size
        x = F.pad(x, (0, 0, 0, (-w) % win_w, 0, (-h) % win_h))  # zeros bottom/right, as MMSeg
        padded_h, padded_w = x.shape[1:3]
        shift = tuple(self.shift_size)
        mask = None
        if any(shift):
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
            mask = self.get_attn_mask(x)  # regions over the padded, rolled map: MMSeg's three slices per side
        windows = window_partition(x, self.window_size).view(-1, self.window_area, channels)
        windows = self.attn(windows, mask=mask).view(-1, win_h, win_w, channels)
        x = window_reverse(windows, self.window_size, padded_h, padded_w)
        if any(shift):
            x = torch.roll(x, shifts=shift, dims=(1, 2))
        return x[:, :h, :w].contiguous()


class SwinBackbone(nn.Module):
    """A timm Swin Transformer as a four-stage, channels-first feature extractor.

    Example:
        >>> import warnings; warnings.simplefilter("ignore")
        >>> net = SwinBackbone("swin_t")
        >>> [tuple(f.shape[1:]) for f in net(torch.zeros(1, 3, 64, 96))], net.strides
        ([(96, 16, 24), (192, 8, 12), (384, 4, 6), (768, 2, 3)], [4, 8, 16, 32])
    """

    size_divisor = SIZE_DIVISOR  # the input sides it takes as they are

    def __init__(self, name: str = "swin_t", output_stride: int = 32, pretrained: str | Path | None = None,
                 drop_path_rate: float = 0.3, allow_random_init: bool = True):
        super().__init__()
        if name not in SWINS:
            raise ValueError(f"unknown Swin backbone {name!r}; expected one of {sorted(SWINS)}")
        if output_stride != 32:
            raise ValueError(f"Swin backbones have output stride 32 only, got output_stride={output_stride}")
        require_weights_or_warn(pretrained, name, allow_random_init)
        self.body = timm.create_model(SWINS[name], pretrained=False, num_classes=0, strict_img_size=False,
                                      always_partition=True, drop_path_rate=drop_path_rate)
        for stage in self.body.layers:  # same modules and parameters, MMSeg's shifted-window order
            for block in stage.blocks:
                block.__class__ = PadThenShiftBlock
        # The classifier and final norm are unused by dense prediction (they would get no gradient).
        self.body.prune_intermediate_layers(len(self.body.layers), prune_norm=True, prune_head=True)
        self.out_channels: list[int] = [int(info["num_chs"]) for info in self.body.feature_info]
        self.strides: list[int] = [int(info["reduction"]) for info in self.body.feature_info]
        self.norms = nn.ModuleList(nn.LayerNorm(c) for c in self.out_channels)
        self.name = name
        self.output_stride = output_stride
        self.weights_report: LoadReport | None = None
        if pretrained is not None:  # classifier and final norm of the file are reported as unused
            self.weights_report = load_pretrained(self.body, pretrained, name, "swin")

    def forward(self, images: Tensor) -> list[Tensor]:
        h, w = images.shape[-2:]
        if h % SIZE_DIVISOR or w % SIZE_DIVISOR:
            raise ValueError(f"{self.name}: input height and width must be multiples of {SIZE_DIVISOR}, "
                             f"got {h}x{w} (pad them: Segmentor's eval forward and "
                             f"pna.models.segmentor.predict_at_input_size do)")
        feats = self.body.forward_intermediates(images, intermediates_only=True)  # NCHW already
        # LayerNorm over channels: move channels last, normalise, move back.
        return [norm(f.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).contiguous() for norm, f in zip(self.norms, feats)]


def build_swin(name: str, output_stride: int = 32, pretrained: str | Path | None = None,
               allow_random_init: bool = True) -> SwinBackbone:
    return SwinBackbone(name, output_stride, pretrained, allow_random_init=allow_random_init)
