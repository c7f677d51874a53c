"""The model rows of the paper's tables, as declarative specs. Adding a row is one line in MODELS."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .pointrend import MMSEG_POINT_HEAD_CHANNELS


@dataclass(frozen=True)
class ModelSpec:
    """Everything ``create_model`` needs besides ``num_classes``; every field can be overridden.

    backbone: a name of ``pna.models.backbones.BACKBONES``; pretrained: None or a local weights file.
    head: a name of ``pna.models.heads.HEADS``, or ``"segfix"`` (a SegFix network, :mod:`pna.models.segfix`:
    no classes, head_channels its branches' width); head_channels None = the head's default width;
    head_kwargs: further head arguments. refine: None, "nam" (NAM only), "nam+sam" or "pointrend" (the PointRend baseline).
    embed_bias: the refinement's 1x1 query/value embeddings have a bias (False in the Detectron2 rows).
    aux: an auxiliary FCN head on res4 (aux_channels wide), run in training only.
    init: how heads and refinement are initialised, "torch" (layer defaults), "mm" or "d2" (the
    authors' two code bases, :mod:`pna.models.init`). coarse_twice: the MMSeg cascade's second coarse
    pass in training (:class:`pna.models.Segmentor`). size_divisibility: inputs padded to a multiple
    of it, in training batches and at test (Detectron2's FPN rows: 32). point_head_channels: the
    PointRend point head's MLP width (MMSeg's 256, see :mod:`pna.models.pointrend`; the smoke profile
    narrows it as it narrows the heads).
    """

    backbone: str = "resnet50c"
    output_stride: int = 32
    pretrained: str | None = None
    head: str = "fcn"
    head_channels: int | None = None
    head_kwargs: dict[str, Any] = field(default_factory=dict)
    refine: str | None = None
    window_size: int = 9
    embed_dims: tuple[int, ...] = (768, 384, 192, 96)
    head_dim: int = 32
    resize_mode: str = "nearest"
    na_impl: str = "auto"
    embed_bias: bool = True
    aux: bool = True
    aux_channels: int = 256
    init: str = "torch"
    coarse_twice: bool = False
    size_divisibility: int = 1
    point_head_channels: int = MMSEG_POINT_HEAD_CHANNELS


MODELS: dict[str, ModelSpec] = {
    # Table 1 (VOC, ResNet-50, L = 9)
    "fcn_r50_os32": ModelSpec(head="fcn", output_stride=32),
    "fcn_r50_os8": ModelSpec(head="fcn", output_stride=8),
    "fcn_r50_os32_pna_nam": ModelSpec(head="fcn", refine="nam"),
    "fcn_r50_os32_pna": ModelSpec(head="fcn", refine="nam+sam"),
}


# Tables 3-7 (and Table 1's FPN + PointRend). The authors trained two code bases
# (docs/authors_settings.md), and a row's model follows the code base of its dataset:
# - MMSeg rows (VOC, COCO-Stuff 10k): ResNetV1c (deep stem 32-32-64), MMSeg heads (BatchNorm,
#   dropout 0.1), PNA embeddings with bias, auxiliary FCN on res4. DeepLabV3 and PSP at output
#   stride 16 (their shipped configs), FCN / FPN / UperNet and Swin at 32.
# - Detectron2 rows (Cityscapes, DeepGlobe, Trans10k): DeepLab ResNets "R-52" / "R-103" (deep stem
#   64-64-128, res5 multi-grid 1, 2, 4), Detectron2's DeepLabV3 head (256 channels, dilations 6, 12,
#   18, 1x1 fusion) at output stride 16, semantic FPN with GroupNorm and no dropout, PNA embeddings
#   without bias, no auxiliary head; window 7 on the FPN rows.
# Baselines the paper only quotes use the backbone and stride of the PNA row they are compared
# with, so that the refinement is the only difference. PointRend: fine-grained features = FPN P2
# for FPN heads, backbone res2 otherwise. DeepGlobe and Trans10k name no backbone: R-52, as the
# authors' Detectron2 configs for them.
_R50, _R101 = dict(backbone="resnet50c"), dict(backbone="resnet101c")
_R52, _R103 = dict(backbone="resnet52", aux=False), dict(backbone="resnet103", aux=False)
_OS16 = dict(output_stride=16)
# Detectron2's DeepLabV3 head pools over the training crop's stride-16 size, Cityscapes' 512x1024 -> 32x64.
_D2_ASPP = dict(head="aspp", head_channels=256, head_kwargs={"dilations": (1, 6, 12, 18), "style": "d2",
                                                              "pool_kernel": (32, 64)}, **_OS16)
# Detectron2's FPN backbone pads every input to a multiple of 32 (main:pna/fpn.py:124; 508 crops train as 512).
D2_FPN_SIZE_DIVISIBILITY = 32
_D2_FPN = dict(head="fpn", head_kwargs={"norm": "gn", "dropout": 0.0}, size_divisibility=D2_FPN_SIZE_DIVISIBILITY)
_D2_PNA = dict(refine="nam+sam", embed_bias=False)
MODELS.update({
    # MMSeg DeepLabV3 (ASPP) / PSP / UperNet, ResNetV1c-101 (Table 3) and -50 (Table 7)
    "deeplabv3_r101_os16": ModelSpec(head="aspp", **_R101, **_OS16),
    "deeplabv3_r101_os16_pointrend": ModelSpec(head="aspp", refine="pointrend", **_R101, **_OS16),
    "deeplabv3_r101_os16_pna": ModelSpec(head="aspp", refine="nam+sam", **_R101, **_OS16),
    "psp_r101_os16": ModelSpec(head="psp", **_R101, **_OS16),
    "psp_r101_os16_pna": ModelSpec(head="psp", refine="nam+sam", **_R101, **_OS16),
    "upernet_r101": ModelSpec(head="upernet", **_R101),
    "deeplabv3_r50_os16": ModelSpec(head="aspp", **_R50, **_OS16),
    "deeplabv3_r50_os16_pointrend": ModelSpec(head="aspp", refine="pointrend", **_R50, **_OS16),
    "deeplabv3_r50_os16_pna": ModelSpec(head="aspp", refine="nam+sam", **_R50, **_OS16),
    # MMSeg semantic FPN + PointRend, ResNetV1c-50 (Table 1)
    "fpn_r50_pointrend": ModelSpec(head="fpn", refine="pointrend", aux=False, **_R50),
    # MMSeg DeepLabV3+, ResNetV1c-50 at output stride 8 (Table 6's quoted baseline)
    "deeplabv3plus_r50_os8": ModelSpec(head="deeplabv3plus", output_stride=8, **_R50),
    # Detectron2 DeepLabV3, R-52 / R-103 at output stride 16 (Table 4)
    "deeplabv3_r52_os16": ModelSpec(**_D2_ASPP, **_R52),
    "deeplabv3_r52_os16_pointrend": ModelSpec(**_D2_ASPP, refine="pointrend", **_R52),
    "deeplabv3_r52_os16_pna": ModelSpec(**_D2_ASPP, **_D2_PNA, **_R52),
    "deeplabv3_r103_os16": ModelSpec(**_D2_ASPP, **_R103),
    "deeplabv3_r103_os16_pointrend": ModelSpec(**_D2_ASPP, refine="pointrend", **_R103),
    "deeplabv3_r103_os16_pna": ModelSpec(**_D2_ASPP, **_D2_PNA, **_R103),
    # Detectron2 semantic FPN, R-103 (Table 4) and R-52 (Tables 5, 6), window 7
    "fpn_r103": ModelSpec(**_D2_FPN, **_R103),
    "fpn_r103_pointrend": ModelSpec(**_D2_FPN, refine="pointrend", **_R103),
    "fpn_r103_pna": ModelSpec(**_D2_FPN, **_D2_PNA, window_size=7, **_R103),
    "fpn_r52": ModelSpec(**_D2_FPN, **_R52),
    "fpn_r52_pointrend": ModelSpec(**_D2_FPN, refine="pointrend", **_R52),
    "fpn_r52_pna": ModelSpec(**_D2_FPN, **_D2_PNA, window_size=7, **_R52),
})
for _tag, _swin in (("swin_t", dict(backbone="swin_t")), ("swin_b", dict(backbone="swin_b"))):  # Table 3
    MODELS.update({
        f"fpn_{_tag}": ModelSpec(head="fpn", aux=False, **_swin),
        f"fpn_{_tag}_pointrend": ModelSpec(head="fpn", refine="pointrend", aux=False, **_swin),
        f"fcn_{_tag}_pna": ModelSpec(head="fcn", refine="nam+sam", **_swin),
        f"upernet_{_tag}": ModelSpec(head="upernet", **_swin),
        f"psp_{_tag}_pna": ModelSpec(head="psp", refine="nam+sam", **_swin),
    })
MODELS["psp_swin_t_pna_nam"] = ModelSpec(head="psp", refine="nam", backbone="swin_t")
# SegFix (Yuan et al. 2020), the model-agnostic boundary refiner compared with PNA in the refiners
# table (pna.analysis.refiners): their network over their backbone, HRNet-W48 (docs/refiners.md).
MODELS["segfix_hrnet48"] = ModelSpec(backbone="hrnet_w48", head="segfix", head_channels=256, aux=False)
