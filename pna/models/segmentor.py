"""Segmentor = backbone + coarse head (+ progressive refinement) (+ auxiliary head).

Inference at any input size happens in one place, :func:`predict_at_input_size` (used by the eval
forward and by ``pna.engine.evaluate.predict_stage_logits``): an image whose sides are not multiples of the
model's :func:`size_divisor` (32 for Swin and for the Detectron2 FPN rows, 1 otherwise) is
zero-padded at the bottom and right, as both code bases pad normalised images, and the logits,
upsampled to the padded size, are cropped back. Training batches are padded to the same multiple
(:func:`pna.data.collate.pad_collate`).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .resize import resize_to


def size_divisor(model: nn.Module) -> int:
    """The multiple the input sides must be for ``model``: the least common multiple of its
    backbone's need (Swin 32) and its own ``size_divisibility`` (Detectron2's FPN rows pad every
    input to a multiple of 32); 1 when neither asks for one."""
    model = getattr(model, "module", model)  # DistributedDataParallel
    backbone = int(getattr(getattr(model, "backbone", None), "size_divisor", 1))
    return math.lcm(backbone, int(getattr(model, "size_divisibility", 1)))


def pad_to_multiple(images: Tensor, divisor: int) -> Tensor:
    """Zero-pad (B, C, H, W) at the bottom and right so that H and W are multiples of ``divisor``.

    Example:
        >>> pad_to_multiple(torch.ones(1, 3, 500, 375), 32).shape
        torch.Size([1, 3, 512, 384])
    """
    h, w = images.shape[-2:]
    pad_h, pad_w = -h % divisor, -w % divisor
    return F.pad(images, (0, pad_w, 0, pad_h)) if pad_h or pad_w else images


def predict_at_input_size(model: nn.Module, images: Tensor, stages: Sequence[str]) -> dict[str, Tensor]:
    """Logits of ``stages`` at the input size, padding inputs the backbone cannot take as they are.

    ``model(images, return_all=True)`` must return native-stride logits by stage name.

    Example:
        >>> import warnings; warnings.simplefilter("ignore")
        >>> from pna.models import build_backbone
        >>> from pna.models.heads import build_head
        >>> backbone = build_backbone("swin_t")
        >>> model = Segmentor(backbone, build_head("fcn", backbone.out_channels, 3, channels=8)).eval()
        >>> predict_at_input_size(model, torch.zeros(1, 3, 50, 70), ["P0"])["P0"].shape
        torch.Size([1, 3, 50, 70])
    """
    h, w = images.shape[-2:]
    padded = pad_to_multiple(images, size_divisor(model))
    outputs = model(padded, return_all=True)
    return {name: resize_to(outputs[name], padded.shape[-2:])[..., :h, :w] for name in stages}


class Segmentor(nn.Module):
    """Every prediction of a segmentation model, each as class logits at its native stride.

    ``forward(images)`` in training mode (or with ``return_all=True``) returns a dict
    ``{"P0": ..., "P1".."P4": ... (with refinement), "aux": ... (training only)}``; in eval mode it
    returns the last prediction upsampled bilinearly to the image size (any size: see
    :func:`predict_at_input_size`). ``return_all=True`` runs the input as it is.

    ``coarse_twice`` (the authors' MMSeg cascade segmentor): in training the coarse head runs a
    second time, and that second P0 (another dropout draw, a second BatchNorm statistics update,
    gradients through both) feeds the refinement, while the first one gets the P0 loss.
    ``size_divisibility``: inputs are padded to a multiple of it (see :func:`size_divisor`).

    Example:
        >>> import warnings; warnings.simplefilter("ignore")
        >>> from pna.models import build_backbone, ProgressiveRefinement
        >>> from pna.models.heads import build_head
        >>> backbone = build_backbone("resnet18c")
        >>> model = Segmentor(backbone, build_head("fcn", backbone.out_channels, 3, channels=16),
        ...                   ProgressiveRefinement(backbone.out_channels, 3, (64, 32, 32, 32), window_size=3))
        >>> model.stage_names, model.eval()(torch.zeros(1, 3, 64, 64)).shape
        (['P0', 'P1', 'P2', 'P3', 'P4'], torch.Size([1, 3, 64, 64]))
    """

    def __init__(self, backbone: nn.Module, head: nn.Module, refine: nn.Module | None = None,
                 aux_head: nn.Module | None = None, coarse_twice: bool = False, size_divisibility: int = 1):
        super().__init__()
        if size_divisibility < 1:
            raise ValueError(f"size_divisibility must be >= 1, got {size_divisibility}")
        self.backbone, self.head, self.refine, self.aux_head = backbone, head, refine, aux_head
        self.coarse_twice, self.size_divisibility = coarse_twice, size_divisibility

    @property
    def stage_names(self) -> list[str]:
        num_refine = len(self.refine.stages) if self.refine is not None else 0
        return [f"P{m}" for m in range(num_refine + 1)]

    def predict_all(self, images: Tensor) -> dict[str, Tensor]:
        feats = self.backbone(images)
        outputs = {"P0": self.head(feats)}
        if self.refine is not None:
            second = self.coarse_twice and self.training
            p0 = self.head(feats) if second else outputs["P0"]
            outputs.update(zip(self.stage_names[1:], self.refine(feats, p0)))
        if self.training and self.aux_head is not None:
            outputs["aux"] = self.aux_head(feats)
        return outputs

    def forward(self, images: Tensor, return_all: bool = False) -> Tensor | dict[str, Tensor]:
        if self.training or return_all:
            return self.predict_all(images)
        last = self.stage_names[-1]
        return predict_at_input_size(self, images, [last])[last]

    @torch.no_grad()
    def attention_maps(self, images: Tensor) -> dict[str, Tensor]:
        """NAM weights of every refinement stage, ``{"P1": (B, heads, H, W, Lh * Lw), ...}``."""
        if self.refine is None:
            raise ValueError("this model has no refinement stages, hence no NAM attention")
        feats = self.backbone(images)
        _, attns = self.refine(feats, self.head(feats), return_attn=True)
        return dict(zip(self.stage_names[1:], attns))
