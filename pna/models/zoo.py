"""The model rows of the paper's tables, as declarative specs. Adding a row is one line in MODELS."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ModelSpec:
    """Everything ``create_model`` needs besides ``num_classes``; every field can be overridden.

    backbone: a name of ``pna.models.backbones.BACKBONES``; pretrained: None or a local weights file.
    head: a name of ``pna.models.heads.HEADS``; head_channels None = the head's default width;
    head_kwargs: further head arguments. refine: None, "nam" (NAM only), "nam+sam" or "pointrend" (the PointRend baseline).
    aux: an auxiliary FCN head on res4 (aux_channels wide), run in training only.
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
    aux: bool = True
    aux_channels: int = 256


MODELS: dict[str, ModelSpec] = {
    # Table 1 (VOC, ResNet-50, L = 9)
    "fcn_r50_os32": ModelSpec(head="fcn", output_stride=32),
    "fcn_r50_os8": ModelSpec(head="fcn", output_stride=8),
    "fcn_r50_os32_pna_nam": ModelSpec(head="fcn", refine="nam"),
    "fcn_r50_os32_pna": ModelSpec(head="fcn", refine="nam+sam"),
}


# Tables 3-7 (and Table 1's FPN + PointRend). Conventions, where the paper is silent:
# - DeepLabV3, PSP and DeepLabV3+ run at output stride 8 (MMSeg's "-d8" configs the authors started
#   from); FPN, UperNet and every Swin model at output stride 32.
# - Semantic FPN and PointRend-on-FPN models have no auxiliary head (MMSeg's FPN / PointRend configs);
#   the others keep the auxiliary FCN on res4 (a row can override ``aux=False``).
# - PointRend: fine-grained features = FPN P2 for FPN heads, backbone res2 otherwise.
# - Window 9 (VOC) by default; 7 for the FPN + PNA rows (Cityscapes-FPN, DeepGlobe, Trans10k; SPEC).
# - DeepGlobe and Trans10k: the paper names no backbone; ResNet-50 here.
_R50, _R101 = dict(backbone="resnet50c"), dict(backbone="resnet101c")
_D8 = dict(output_stride=8)
MODELS.update({
    # DeepLabV3 (ASPP head), ResNet-50 / 101, OS 8: Tables 3, 4, 7
    "deeplabv3_r50_os8": ModelSpec(head="aspp", **_R50, **_D8),
    "deeplabv3_r50_os8_pointrend": ModelSpec(head="aspp", refine="pointrend", **_R50, **_D8),
    "deeplabv3_r50_os8_pna": ModelSpec(head="aspp", refine="nam+sam", **_R50, **_D8),
    "deeplabv3_r101_os8": ModelSpec(head="aspp", **_R101, **_D8),
    "deeplabv3_r101_os8_pointrend": ModelSpec(head="aspp", refine="pointrend", **_R101, **_D8),
    "deeplabv3_r101_os8_pna": ModelSpec(head="aspp", refine="nam+sam", **_R101, **_D8),
    # PSP / UperNet, ResNet-101: Table 3
    "psp_r101_os8": ModelSpec(head="psp", **_R101, **_D8),
    "psp_r101_os8_pna": ModelSpec(head="psp", refine="nam+sam", **_R101, **_D8),
    "upernet_r101": ModelSpec(head="upernet", **_R101),
    # Semantic FPN, ResNet-50 / 101: Tables 1, 4, 5, 6
    "fpn_r50": ModelSpec(head="fpn", aux=False, **_R50),
    "fpn_r50_pointrend": ModelSpec(head="fpn", refine="pointrend", aux=False, **_R50),
    "fpn_r50_pna": ModelSpec(head="fpn", refine="nam+sam", window_size=7, aux=False, **_R50),
    "fpn_r101": ModelSpec(head="fpn", aux=False, **_R101),
    "fpn_r101_pointrend": ModelSpec(head="fpn", refine="pointrend", aux=False, **_R101),
    "fpn_r101_pna": ModelSpec(head="fpn", refine="nam+sam", window_size=7, aux=False, **_R101),
    # DeepLabV3+, ResNet-50: Table 6
    "deeplabv3plus_r50": ModelSpec(head="deeplabv3plus", **_R50, **_D8),
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

# Rows the paper quotes from other works; they have no model here.
CITED_ONLY = ("SegFix", "EBLNet", "FaPN", "GLNet", "MagNet", "ISDNet", "Translab")

# (table, method as printed, backbone as printed or "" when not printed) -> registry model.
# Table 2 rows are fcn_r50_os32_pna_nam with window_size = 5 / 7 / 9 / 11.
PAPER_ROWS: dict[tuple[str, str, str], str] = {
    ("table1", "FCN-OS-32", "ResNet50"): "fcn_r50_os32",
    ("table1", "FCN-OS-8", "ResNet50"): "fcn_r50_os8",
    ("table1", "FPN + PointRend", "ResNet50"): "fpn_r50_pointrend",
    ("table1", "FCN-OS-32 + Ours (NAM)", "ResNet50"): "fcn_r50_os32_pna_nam",
    ("table1", "FCN-OS-32 + Ours (NAM + SAM)", "ResNet50"): "fcn_r50_os32_pna",
    **{("table2", f"FCN-OS-32 + Ours (NAM), window {w}", "ResNet50"): "fcn_r50_os32_pna_nam" for w in (5, 7, 9, 11)},
    ("table3", "DeeplabV3", "ResNet101"): "deeplabv3_r101_os8",
    ("table3", "DeeplabV3 + PointRend", "ResNet101"): "deeplabv3_r101_os8_pointrend",
    ("table3", "DeeplabV3 + PNA (ours)", "ResNet101"): "deeplabv3_r101_os8_pna",
    ("table3", "PSP", "ResNet101"): "psp_r101_os8",
    ("table3", "PSP + FPN (UperNet)", "ResNet101"): "upernet_r101",
    ("table3", "PSP + PNA (ours)", "ResNet101"): "psp_r101_os8_pna",
    ("table3", "FPN", "Swin-T"): "fpn_swin_t",
    ("table3", "FPN + PointRend", "Swin-T"): "fpn_swin_t_pointrend",
    ("table3", "FCN + PNA (ours)", "Swin-T"): "fcn_swin_t_pna",
    ("table3", "FPN + PSP (UperNet)", "Swin-T"): "upernet_swin_t",
    ("table3", "PSP + PNA (ours, NAM)", "Swin-T"): "psp_swin_t_pna_nam",
    ("table3", "PSP + PNA (ours, NAM+SAM)", "Swin-T"): "psp_swin_t_pna",
    ("table3", "FPN", "Swin-B"): "fpn_swin_b",
    ("table3", "FPN + PointRend", "Swin-B"): "fpn_swin_b_pointrend",
    ("table3", "FCN + PNA (ours)", "Swin-B"): "fcn_swin_b_pna",
    ("table3", "FPN + PSP (UperNet)", "Swin-B"): "upernet_swin_b",
    ("table3", "PSP + PNA (ours)", "Swin-B"): "psp_swin_b_pna",
    ("table4", "DeeplabV3", "ResNet50"): "deeplabv3_r50_os8",
    ("table4", "DeeplabV3 + PointRend", "ResNet50"): "deeplabv3_r50_os8_pointrend",
    ("table4", "DeeplabV3 + PNA (ours)", "ResNet50"): "deeplabv3_r50_os8_pna",
    ("table4", "DeeplabV3", "ResNet101"): "deeplabv3_r101_os8",
    ("table4", "DeeplabV3 + PointRend", "ResNet101"): "deeplabv3_r101_os8_pointrend",
    ("table4", "DeeplabV3 + PNA (ours)", "ResNet101"): "deeplabv3_r101_os8_pna",
    ("table4", "FPN", "ResNet101"): "fpn_r101",
    ("table4", "FPN + PointRend", "ResNet101"): "fpn_r101_pointrend",
    ("table4", "FPN + PNA (ours)", "ResNet101"): "fpn_r101_pna",
    ("table5", "FPN*", ""): "fpn_r50",
    ("table5", "FPN + PointRend*", ""): "fpn_r50_pointrend",
    ("table5", "FPN + PNA (ours)", ""): "fpn_r50_pna",
    ("table6", "Deeplabv3+", ""): "deeplabv3plus_r50",
    ("table6", "PointRend", ""): "fpn_r50_pointrend",   # the paper names no coarse head: FPN as in Table 5
    ("table6", "FPN + PNA (ours)", ""): "fpn_r50_pna",
    # Printed "DeeplabV3+"; the text compares against DeepLabV3 as the coarse head (as paper_numbers.csv reads it).
    ("table7", "DeeplabV3+", "ResNet50"): "deeplabv3_r50_os8",
    ("table7", "DeeplabV3 + PointRend", "ResNet50"): "deeplabv3_r50_os8_pointrend",
    ("table7", "DeeplabV3 + PNA (ours)", "ResNet50"): "deeplabv3_r50_os8_pna",
}
