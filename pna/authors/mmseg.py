"""Name table of the authors' MMSegmentation 0.27 branch (VOC, COCO-Stuff 10k rows).

Their model is mmseg's cascade encoder-decoder: ``backbone.*`` (ResNetV1c or SwinTransformer),
``decode_head.0.*`` the coarse head, ``decode_head.1.*`` the PNA head (levels ``pna3..pna0`` =
res5..res2, processed in that order), ``auxiliary_head.*`` the FCN on res4. A model without PNA has
a single ``decode_head.*``; a semantic FPN model has a ``neck.*``. Heads use mmseg's names: an mmcv
ConvModule ``<name>`` holds ``<name>.conv`` and ``<name>.bn`` (ours: torchvision's ``<name>.0`` and
``<name>.1``), the classifier is ``conv_seg``.

Backbone keys are renamed with the rules the pretrained-weight loader already uses
(:mod:`pna.models.backbones.weights`): mmseg V1c -> timm for ResNets; for Swin, mmseg's names ->
Microsoft's -> timm's, plus one layout change: mmseg's patch merging gathers each 2x2 patch with
``nn.Unfold`` (channel index ``c * 4 + 2 * row + col``) where timm concatenates the four positions
(index ``(2 * col + row) * C + c``), so the merging LayerNorm and reduction are reordered to timm's.

Example:
    >>> from pna.models import get_spec
    >>> [s.theirs for s in sections(get_spec("fcn_r50_os32_pna"))]
    ['backbone.', 'decode_head.0.', 'decode_head.1.', 'auxiliary_head.']
    >>> sections(get_spec("fcn_r50_os32_pna"))[1].rename("conv_cat.bn.running_var")
    'concat.1.running_var'
"""
from __future__ import annotations

import re

from torch import Tensor

from pna.models.backbones.weights import _mmseg_v1c, _swin_microsoft
from pna.models.registry import ModelSpec

from .convert import DERIVED, AuthorsCheckpointError, Mapped, Section, regex_rename
from .stage import pna_rename

BN_LEAVES = "weight|bias|running_mean|running_var|num_batches_tracked"


def conv_module(theirs: str, ours: str) -> list[tuple[str, str]]:
    """An mmcv ConvModule (``.conv`` + ``.bn``) -> our conv-norm-act (``.0`` + ``.1``); regex names."""
    return [(rf"{theirs}\.conv\.(?P<leaf>weight|bias)", rf"{ours}.0.\g<leaf>"),
            (rf"{theirs}\.bn\.(?P<leaf>{BN_LEAVES})", rf"{ours}.1.\g<leaf>")]


def plain_conv(theirs: str, ours: str) -> list[tuple[str, str]]:
    return [(rf"{theirs}\.(?P<leaf>weight|bias)", rf"{ours}.\g<leaf>")]


CLASSIFIER = plain_conv("conv_seg", "classifier.1")  # ours: Dropout2d then the 1x1 conv
_PPM = [*conv_module(r"psp_modules\.(\d+)\.1", r"ppm.stages.\1.1"), *conv_module("bottleneck", "ppm.bottleneck")]

HEADS: dict[str, list[tuple[str, str]]] = {
    "fcn": [*conv_module(r"convs\.(\d+)", r"convs.\1"), *conv_module("conv_cat", "concat"), *CLASSIFIER],
    # mmseg's ASPP concatenates [image pool, dilation 1 (1x1), 12, 24, 36], as our branches 0..4
    "aspp": [*conv_module(r"image_pool\.1", "aspp.branches.0.conv"),
             *[rule for i in range(4) for rule in conv_module(rf"aspp_modules\.{i}", f"aspp.branches.{i + 1}")],
             *conv_module("bottleneck", "aspp.bottleneck"), *CLASSIFIER],
    "psp": [*_PPM, *CLASSIFIER],
    "upernet": [*_PPM, *conv_module(r"lateral_convs\.(\d+)", r"lateral.\1"),
                *conv_module(r"fpn_convs\.(\d+)", r"fpn_convs.\1"), *conv_module("fpn_bottleneck", "fuse"),
                *CLASSIFIER],
    # FPNHead: scale_heads.<level>.<k> alternate ConvModule / Upsample, as ours
    "fpn": [*conv_module(r"scale_heads\.(\d+)\.(\d+)", r"scale_heads.\1.\2"), *CLASSIFIER],
}
FPN_NECK = [*plain_conv(r"lateral_convs\.(\d+)\.conv", r"lateral.\1"),
            *plain_conv(r"fpn_convs\.(\d+)\.conv", r"output.\1")]
AUX_HEAD = [*conv_module(r"convs\.(\d+)", r"convs.\1"), *CLASSIFIER]

# mmseg SwinTransformer -> Microsoft's names (patch merging at the end of stage i, as in mmseg)
_SWIN_TO_MICROSOFT = regex_rename([
    (r"patch_embed\.projection\.(weight|bias)", r"patch_embed.proj.\1"),
    (r"patch_embed\.norm\.(weight|bias)", r"patch_embed.norm.\1"),
    (r"stages\.(\d+)\.blocks\.(\d+)\.attn\.w_msa\.(relative_position_bias_table|(qkv|proj)\.(weight|bias))",
     r"layers.\1.blocks.\2.attn.\3"),
    (r"stages\.(\d+)\.blocks\.(\d+)\.(norm[12])\.(weight|bias)", r"layers.\1.blocks.\2.\3.\4"),
    (r"stages\.(\d+)\.blocks\.(\d+)\.ffn\.layers\.0\.0\.(weight|bias)", r"layers.\1.blocks.\2.mlp.fc1.\3"),
    (r"stages\.(\d+)\.blocks\.(\d+)\.ffn\.layers\.1\.(weight|bias)", r"layers.\1.blocks.\2.mlp.fc2.\3"),
    (r"stages\.(\d+)\.downsample\.(norm\.weight|norm\.bias|reduction\.weight)", r"layers.\1.downsample.\2"),
])
UNFOLD_WHY = "mmseg's patch merging (nn.Unfold channel order) reordered to timm's 2x2 concatenation"


def unfold_to_timm(tensor: Tensor) -> Tensor:
    """Reorder the last axis (4C) from mmseg's ``c * 4 + 2 * row + col`` to timm's ``(2 * col + row) * C + c``.

    >>> import torch
    >>> unfold_to_timm(torch.arange(8.)).tolist()   # C = 2: (c, row, col) -> (col, row, c)
    [0.0, 4.0, 2.0, 6.0, 1.0, 5.0, 3.0, 7.0]
    """
    channels = tensor.shape[-1] // 4
    lead = tensor.shape[:-1]
    return tensor.reshape(*lead, channels, 2, 2).transpose(-1, -3).reshape(tensor.shape).contiguous()


def swin_rename(key: str) -> str | Mapped | None:
    """mmseg Swin key -> ours, relative to ``backbone.`` (timm body under ``body.``, output norms ``norms.``)."""
    if key.endswith("relative_position_index"):
        return DERIVED
    out_norm = re.fullmatch(r"norm([0-3])\.(weight|bias)", key)
    if out_norm:
        return f"norms.{out_norm[1]}.{out_norm[2]}"
    microsoft = _SWIN_TO_MICROSOFT(key)
    if microsoft is None:
        return None
    timm_key = "body." + _swin_microsoft(microsoft)
    return Mapped(timm_key, unfold_to_timm, UNFOLD_WHY) if ".downsample." in timm_key else timm_key


def backbone_section(spec: ModelSpec) -> Section:
    if spec.backbone.startswith("swin"):
        return Section("backbone", "backbone.", "backbone.", swin_rename)
    if spec.backbone in ("resnet50c", "resnet101c", "resnet18c", "resnet10c_half"):
        return Section("backbone", "backbone.", "backbone.body.", _mmseg_v1c)
    raise AuthorsCheckpointError(f"the authors' MMSeg branch has no backbone {spec.backbone!r} "
                                 "(it uses ResNetV1c-50/101 and Swin-T/B)")


def sections(spec: ModelSpec) -> list[Section]:
    """The name table for the model of ``spec``: one section per part of their model."""
    if spec.head not in HEADS:
        raise AuthorsCheckpointError(f"no MMSeg name table for head {spec.head!r}; covered: {sorted(HEADS)}")
    if spec.refine not in (None, "nam", "nam+sam"):
        raise AuthorsCheckpointError(f"no MMSeg name table for refinement {spec.refine!r} (the authors released PNA)")
    table = [backbone_section(spec)]
    if spec.head == "fpn":
        table.append(Section("FPN neck", "neck.", "head.fpn.", regex_rename(FPN_NECK)))
    coarse = "decode_head.0." if spec.refine else "decode_head."
    table.append(Section("coarse head", coarse, "head.", regex_rename(HEADS[spec.head])))
    if spec.refine:
        levels = {f"pna{i}": 3 - i for i in range(4)}  # pna3 = res5 = our stage 0
        table.append(Section("refinement", "decode_head.1.", "refine.", pna_rename(levels.get)))
    table.append(Section("auxiliary head", "auxiliary_head.", "aux_head.", regex_rename(AUX_HEAD), optional=True))
    return table
