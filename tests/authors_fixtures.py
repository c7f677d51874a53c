"""State dicts in the authors' two formats, generated from the key/shape facts (docs/authors_checkpoints.md,
mmseg's and Detectron2's module names), with the place each tensor must land in our model.

Every generator returns rows ``(their key, shape, our key)``; :func:`fill` draws random values. These
tables are the tests' own reading of the facts, written independently of ``pna.authors``.
"""
from __future__ import annotations

import torch

Row = tuple[str, tuple[int, ...], str]
BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
PLANES = (64, 128, 256, 512)


def bn(theirs: str, ours: str, channels: int) -> list[Row]:
    return [(f"{theirs}.{leaf}", () if leaf == "num_batches_tracked" else (channels,), f"{ours}.{leaf}")
            for leaf in BN]


def conv(theirs: str, ours: str, shape: tuple[int, ...], bias: bool = False) -> list[Row]:
    return [(f"{theirs}.weight", shape, f"{ours}.weight")] + ([(f"{theirs}.bias", shape[:1], f"{ours}.bias")] if bias else [])


def prefixed(rows: list[Row], theirs: str, ours: str) -> list[Row]:
    return [(theirs + t, s, ours + o if o else "") for t, s, o in rows]  # "": a buffer with no place of ours


# ---- backbones ----------------------------------------------------------------------------------
def bottleneck_stages(depths: tuple[int, ...], stem_out: int, style: str) -> list[Row]:
    """res2..res5 bottlenecks: mmseg ``layerN.b.{convK, bnK, downsample.0/1}``, Detectron2
    ``res{N+1}.b.{convK(.norm), shortcut(.norm)}``; ours (timm) ``layerN.b.{convK, bnK, downsample.0/1}``."""
    rows: list[Row] = []
    width_in = stem_out
    for n, (depth, planes) in enumerate(zip(depths, PLANES), start=1):
        for b in range(depth):
            ours = f"layer{n}.{b}"
            theirs = ours if style == "mm" else f"res{n + 1}.{b}"
            shapes = [(planes, width_in if b == 0 else 4 * planes, 1, 1), (planes, planes, 3, 3), (4 * planes, planes, 1, 1)]
            for k, shape in enumerate(shapes, start=1):
                rows += conv(f"{theirs}.conv{k}", f"{ours}.conv{k}", shape)
                rows += bn(f"{theirs}.bn{k}" if style == "mm" else f"{theirs}.conv{k}.norm", f"{ours}.bn{k}", shape[0])
            if b == 0:
                down = f"{theirs}.downsample.0" if style == "mm" else f"{theirs}.shortcut"
                rows += conv(down, f"{ours}.downsample.0", (4 * planes, width_in, 1, 1))
                rows += bn(f"{theirs}.downsample.1" if style == "mm" else f"{theirs}.shortcut.norm",
                           f"{ours}.downsample.1", 4 * planes)
        width_in = 4 * planes
    return rows


def resnet_v1c(depths=(3, 4, 6, 3)) -> list[Row]:
    """mmseg ResNetV1c: stem.0/3/6 convs 32-32-64 with BNs stem.1/4/7; ours timm conv1.0/3/6, conv1.1/4, bn1."""
    rows = conv("stem.0", "conv1.0", (32, 3, 3, 3)) + bn("stem.1", "conv1.1", 32)
    rows += conv("stem.3", "conv1.3", (32, 32, 3, 3)) + bn("stem.4", "conv1.4", 32)
    rows += conv("stem.6", "conv1.6", (64, 32, 3, 3)) + bn("stem.7", "bn1", 64)
    return prefixed(rows + bottleneck_stages(depths, 64, "mm"), "backbone.", "backbone.body.")


def resnet_d2(depths=(3, 4, 6, 3), prefix: str = "backbone.bottom_up.") -> list[Row]:
    """Detectron2 DeepLab R-52/R-103: stem.conv1/2/3 (64-64-128) each with .norm; res2 input 128."""
    rows: list[Row] = []
    for k, (shape, ours, norm) in enumerate([((64, 3, 3, 3), "conv1.0", "conv1.1"), ((64, 64, 3, 3), "conv1.3", "conv1.4"),
                                             ((128, 64, 3, 3), "conv1.6", "bn1")], start=1):
        rows += conv(f"stem.conv{k}", ours, shape) + bn(f"stem.conv{k}.norm", norm, shape[0])
    return prefixed(rows + bottleneck_stages(depths, 128, "d2"), prefix, "backbone.body.")


def swin_mmseg(embed: int = 96, depths=(2, 2, 6, 2), heads=(3, 6, 12, 24), window: int = 7) -> list[Row]:
    """mmseg SwinTransformer names -> timm (body) + our output norms; patch merging moves to the next stage."""
    rows = conv("patch_embed.projection", "body.patch_embed.proj", (embed, 3, 4, 4), bias=True)
    rows += [(f"patch_embed.norm.{leaf}", (embed,), f"body.patch_embed.norm.{leaf}") for leaf in ("weight", "bias")]
    for i, (depth, h) in enumerate(zip(depths, heads)):
        d = embed * 2 ** i
        for j in range(depth):
            t, o = f"stages.{i}.blocks.{j}", f"body.layers.{i}.blocks.{j}"
            rows += [(f"{t}.norm1.{leaf}", (d,), f"{o}.norm1.{leaf}") for leaf in ("weight", "bias")]
            rows += [(f"{t}.attn.w_msa.relative_position_bias_table", ((2 * window - 1) ** 2, h),
                      f"{o}.attn.relative_position_bias_table")]
            rows += [(f"{t}.attn.w_msa.relative_position_index", (window ** 2, window ** 2), "")]  # derived
            rows += conv(f"{t}.attn.w_msa.qkv", f"{o}.attn.qkv", (3 * d, d), bias=True)
            rows += conv(f"{t}.attn.w_msa.proj", f"{o}.attn.proj", (d, d), bias=True)
            rows += [(f"{t}.norm2.{leaf}", (d,), f"{o}.norm2.{leaf}") for leaf in ("weight", "bias")]
            rows += conv(f"{t}.ffn.layers.0.0", f"{o}.mlp.fc1", (4 * d, d), bias=True)
            rows += conv(f"{t}.ffn.layers.1", f"{o}.mlp.fc2", (d, 4 * d), bias=True)
        if i < 3:  # merging at the end of stage i (mmseg) = start of stage i + 1 (timm)
            rows += [(f"stages.{i}.downsample.norm.{leaf}", (4 * d,), f"body.layers.{i + 1}.downsample.norm.{leaf}")
                     for leaf in ("weight", "bias")]
            rows += [(f"stages.{i}.downsample.reduction.weight", (2 * d, 4 * d), f"body.layers.{i + 1}.downsample.reduction.weight")]
        rows += [(f"norm{i}.{leaf}", (d,), f"norms.{i}.{leaf}") for leaf in ("weight", "bias")]
    return prefixed(rows, "backbone.", "backbone.")


# ---- coarse heads -------------------------------------------------------------------------------
def conv_module(theirs: str, ours: str, shape: tuple[int, ...]) -> list[Row]:
    """mmcv ConvModule (conv + bn) -> our conv-norm-act (.0 + .1)."""
    return conv(f"{theirs}.conv", f"{ours}.0", shape) + bn(f"{theirs}.bn", f"{ours}.1", shape[0])


def mm_fcn(classes: int, c_in: int = 2048, ch: int = 512) -> list[Row]:
    rows = conv_module("convs.0", "convs.0", (ch, c_in, 3, 3)) + conv_module("convs.1", "convs.1", (ch, ch, 3, 3))
    rows += conv_module("conv_cat", "concat", (ch, c_in + ch, 3, 3))  # input = concat(res5, convs output)
    return rows + conv("conv_seg", "classifier.1", (classes, ch, 1, 1), bias=True)


def mm_aspp(classes: int, c_in: int = 2048, ch: int = 512) -> list[Row]:
    rows = conv_module("image_pool.1", "aspp.branches.0.conv", (ch, c_in, 1, 1))
    rows += conv_module("aspp_modules.0", "aspp.branches.1", (ch, c_in, 1, 1))  # dilation 1: a 1x1 conv
    for i in (1, 2, 3):  # dilations 12, 24, 36
        rows += conv_module(f"aspp_modules.{i}", f"aspp.branches.{i + 1}", (ch, c_in, 3, 3))
    rows += conv_module("bottleneck", "aspp.bottleneck", (ch, 5 * ch, 3, 3))
    return rows + conv("conv_seg", "classifier.1", (classes, ch, 1, 1), bias=True)


def mm_psp(classes: int, c_in: int = 2048, ch: int = 512) -> list[Row]:
    rows = [r for i in range(4) for r in conv_module(f"psp_modules.{i}.1", f"ppm.stages.{i}.1", (ch, c_in, 1, 1))]
    rows += conv_module("bottleneck", "ppm.bottleneck", (ch, c_in + 4 * ch, 3, 3))
    return rows + conv("conv_seg", "classifier.1", (classes, ch, 1, 1), bias=True)


def mm_aux(classes: int, c_in: int = 1024) -> list[Row]:
    rows = conv_module("convs.0", "convs.0", (256, c_in, 3, 3)) + conv("conv_seg", "classifier.1", (classes, 256, 1, 1), bias=True)
    return prefixed(rows, "auxiliary_head.", "aux_head.")


def d2_fpn(classes: int, in_channels=(256, 512, 1024, 2048)) -> list[Row]:
    """backbone.fpn_lateral/output{2..5} and the semantic FPN head p2.0 .. p5.4 (GroupNorm), predictor."""
    rows: list[Row] = []
    for level, c in zip(range(2, 6), in_channels):
        rows += conv(f"backbone.fpn_lateral{level}", f"head.fpn.lateral.{level - 2}", (256, c, 1, 1), bias=True)
        rows += conv(f"backbone.fpn_output{level}", f"head.fpn.output.{level - 2}", (256, 256, 3, 3), bias=True)
    head: list[Row] = []
    for level in range(2, 6):
        for step in range(max(1, level - 2)):
            t, o = f"p{level}.{2 * step}", f"scale_heads.{level - 2}.{2 * step}"
            head += conv(t, f"{o}.0", (128, 256 if step == 0 else 128, 3, 3))
            head += [(f"{t}.norm.{leaf}", (128,), f"{o}.1.{leaf}") for leaf in ("weight", "bias")]
    head += conv("predictor", "classifier.1", (classes, 128, 1, 1), bias=True)
    return rows + prefixed(head, "sem_seg_head.coarse_sem_seg_head.", "head.")


def d2_aspp(classes: int, c_in: int = 2048, ch: int = 256) -> list[Row]:
    """Detectron2 ASPP: convs.0 1x1, convs.1..3 dilated (each conv + .norm), convs.4.1 pooling conv with
    bias, project (1x1 over the 5 branches, pooling last) + .norm; predictor. ``project`` is checked apart.
    Read in facebookresearch/detectron2@47d8ed7a1bd9:detectron2/layers/aspp.py:59-127 and main:pna/deeplabv3.py:58,69."""
    rows = conv("aspp.convs.0", "aspp.branches.1.0", (ch, c_in, 1, 1)) + bn("aspp.convs.0.norm", "aspp.branches.1.1", ch)
    for i in (1, 2, 3):
        rows += conv(f"aspp.convs.{i}", f"aspp.branches.{i + 1}.0", (ch, c_in, 3, 3))
        rows += bn(f"aspp.convs.{i}.norm", f"aspp.branches.{i + 1}.1", ch)
    rows += conv("aspp.convs.4.1", "aspp.branches.0.conv.0", (ch, c_in, 1, 1), bias=True)
    rows += [("aspp.project.weight", (ch, 5 * ch, 1, 1), "aspp.bottleneck.0.weight")]
    rows += bn("aspp.project.norm", "aspp.bottleneck.1", ch)
    rows += conv("predictor", "classifier.1", (classes, ch, 1, 1), bias=True)
    return prefixed(rows, "sem_seg_head.coarse_sem_seg_head.", "head.")


# ---- the PNA head -------------------------------------------------------------------------------
def pna_stage(level: str, stage: int, dim: int, c_in: int, classes: int, window: int, embed_bias: bool,
              sam: bool = True) -> list[Row]:
    """One level of their PNA head (keys relative to the head) and our ``stages.<stage>``."""
    heads, hidden = dim // 32, int(2.66 * dim)
    o = f"stages.{stage}"
    rows = conv(f"patch_embeds.{level}", f"{o}.query", (dim, c_in, 1, 1), bias=embed_bias)
    rows += conv(f"value_embeds.{level}", f"{o}.value", (dim, classes, 1, 1), bias=embed_bias)
    b = f"stages.{level}.blocks.0"
    if sam:
        s = f"{b}.atten1"
        rows += [(f"{s}.norm1.body.{leaf}", (dim,), f"{o}.sam.norm1.{leaf}") for leaf in ("weight", "bias")]
        rows += [(f"{s}.attn.temperature", (heads, 1, 1), f"{o}.sam.attn.temperature"),
                 (f"{s}.attn.qkv.weight", (3 * dim, dim, 1, 1), f"{o}.sam.attn.qkv.weight"),
                 (f"{s}.attn.qkv_dwconv.weight", (3 * dim, 1, 3, 3), f"{o}.sam.attn.qkv_dw.weight"),
                 (f"{s}.attn.project_out.weight", (dim, dim, 1, 1), f"{o}.sam.attn.proj.weight")]
        rows += [(f"{s}.norm2.body.{leaf}", (dim,), f"{o}.sam.norm2.{leaf}") for leaf in ("weight", "bias")]
        rows += [(f"{s}.ffn.project_in.weight", (2 * hidden, dim, 1, 1), f"{o}.sam.ffn.expand.weight"),
                 (f"{s}.ffn.dwconv.weight", (2 * hidden, 1, 3, 3), f"{o}.sam.ffn.dw.weight"),
                 (f"{s}.ffn.project_out.weight", (dim, hidden, 1, 1), f"{o}.sam.ffn.shrink.weight")]
    for theirs, ours in (("norm1", "norm_query"), ("norm1_2", "norm_value"), ("norm2", "norm_mlp"), ("out_norm", "norm_out")):
        rows += [(f"{b}.{theirs}.{leaf}", (dim,), f"{o}.{ours}.{leaf}") for leaf in ("weight", "bias")]
    rows += [(f"{b}.attn.rpb", (heads, 2 * window - 1, 2 * window - 1), f"{o}.nam.rpb")]
    rows += conv(f"{b}.attn.qk", f"{o}.nam.qk", (2 * dim, dim), bias=True)
    rows += conv(f"{b}.attn.embed_v", f"{o}.nam.v", (dim, dim), bias=True)
    rows += conv(f"{b}.attn.proj", f"{o}.nam.proj", (dim, dim), bias=True)
    rows += conv(f"{b}.mlp.fc1", f"{o}.mlp.fc1", (dim, dim), bias=True)
    rows += conv(f"{b}.mlp.fc2", f"{o}.mlp.fc2", (dim, dim), bias=True)
    rows += conv(f"conv_seg_layers.{level}", f"{o}.classifier", (classes, dim, 1, 1), bias=True)
    return rows


DIMS = {5: 768, 4: 384, 3: 192, 2: 96}  # D per backbone level res5..res2


def mm_pna(classes: int, window: int = 9, in_channels=(256, 512, 1024, 2048)) -> list[Row]:
    """MMSeg: levels pna3..pna0 = res5..res2 (our stages 0..3), embeddings with bias."""
    rows = [r for i in (3, 2, 1, 0) for r in pna_stage(f"pna{i}", 3 - i, DIMS[i + 2], in_channels[i], classes, window, True)]
    return prefixed(rows, "decode_head.1.", "refine.")


def d2_pna(classes: int, window: int = 7, in_channels=(256, 512, 1024, 2048), head: str = "pna_head") -> list[Row]:
    """Detectron2: levels res2..res5 stored in that order, res5 = our stage 0; embeddings without bias."""
    rows = [r for n in (2, 3, 4, 5) for r in pna_stage(f"res{n}", 5 - n, DIMS[n], in_channels[n - 2], classes, window, False)]
    return prefixed(rows, f"sem_seg_head.{head}.", "refine.")


# ---- whole models -------------------------------------------------------------------------------
def mmseg_fcn_pna_r50_voc() -> list[Row]:
    """The facts' MMSeg model: FCN + PNA, ResNetV1c-50, VOC (21 classes)."""
    return resnet_v1c() + prefixed(mm_fcn(21), "decode_head.0.", "head.") + mm_pna(21) + mm_aux(21)


def detectron2_fpn_pna_r52_cityscapes() -> list[Row]:
    """The facts' Detectron2 model: semantic FPN + PNA, R-52, Cityscapes (19 classes)."""
    return resnet_d2() + d2_fpn(19) + d2_pna(19)


def fill(rows: list[Row], seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values with the right dtypes: BN counters int64, running variances positive."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape, _ in rows:
        if key.endswith("num_batches_tracked"):
            state[key] = torch.randint(1, 90000, (), generator=gen)
        elif key.endswith("relative_position_index"):
            state[key] = torch.randint(0, 169, shape, generator=gen)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=gen) + 0.5
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.05
    return state


def counts(rows: list[Row]) -> tuple[int, int]:
    """(tensors, parameters) of a generated model; parameters exclude BN statistics and buffers."""
    buffers = ("running_mean", "running_var", "num_batches_tracked", "relative_position_index")
    params = sum(int(torch.Size(s).numel()) for k, s, _ in rows if not k.endswith(buffers))
    return len(rows), params
