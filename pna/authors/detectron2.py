"""Name table of the authors' Detectron2 branch (Cityscapes, DeepGlobe, Trans10k rows).

Their model: the DeepLab ResNet "R-52/R-103" (``backbone.bottom_up.*`` under an FPN, ``backbone.*``
alone for DeepLabV3), the FPN's ``backbone.fpn_lateral{2..5}`` / ``fpn_output{2..5}``,
``sem_seg_head.coarse_sem_seg_head.*`` the coarse head and ``sem_seg_head.pna_head.*`` the PNA
head (levels ``res2..res5`` stored in that order, processed res5 first; an older name of that head,
``natten_head``, is read the same way and reported). A model without PNA has its head directly at
``sem_seg_head.*``. Detectron2 modules keep a conv's norm inside it: ``<conv>.weight`` and
``<conv>.norm.*``. Their PNA embeddings have no bias: a row built with bias gets zeros, reported.

Coarse heads: the semantic FPN (``p<level>.<k>`` convs with GroupNorm, ``predictor``), and
DeepLabV3's ASPP (``aspp.convs.0`` the 1x1 branch, ``.1..3`` the dilated ones, ``.4.1`` the
image-pooling conv with bias; ``aspp.project`` fuses them). Detectron2 concatenates the pooling branch
LAST, ours first: the input channels of ``project`` are reordered to ours (same shape). The ASPP and
predictor names were checked against Detectron2's ASPP and the authors' DeepLabV3 head
(``docs/authors_checkpoints.md``, DeepLabV3 + PNA table).

Example:
    >>> from pna.models import get_spec
    >>> table = sections(get_spec("fpn_r52_pna"))
    >>> [s.theirs for s in table][:3]
    ['backbone.bottom_up.', 'backbone.fpn_', 'sem_seg_head.coarse_sem_seg_head.']
    >>> [s.theirs for s in table][3:]
    ['sem_seg_head.pna_head.', 'sem_seg_head.natten_head.']
    >>> table[2].rename("p4.2.norm.weight"), table[1].rename("lateral5.bias")
    ('scale_heads.2.2.1.weight', 'lateral.3.bias')
"""
from __future__ import annotations

import torch
from torch import Tensor

from pna.models.backbones.weights import _detectron2
from pna.models.registry import ModelSpec

from .convert import AuthorsCheckpointError, Mapped, Section, regex_rename
from .stage import pna_rename

BN_LEAVES = "weight|bias|running_mean|running_var|num_batches_tracked"
PREDICTOR = [(r"predictor\.(weight|bias)", r"classifier.1.\1")]  # ours: Dropout (p=0 here) then the conv
POOL_LAST_WHY = "Detectron2 concatenates the image-pooling branch last, ours first: project's input channels reordered"


def pool_first(weight: Tensor) -> Tensor:
    """Fusion weight (C, 5C, 1, 1) over [1x1, d6, d12, d18, pool] -> over [pool, 1x1, d6, d12, d18].

    >>> pool_first(torch.arange(5.).reshape(1, 5, 1, 1)).flatten().tolist()
    [4.0, 0.0, 1.0, 2.0, 3.0]
    """
    width = weight.shape[1] // 5
    return torch.cat([weight[:, 4 * width:], weight[:, :4 * width]], dim=1).contiguous()


def _level(match, offset: int = 2) -> int:
    return int(match[1]) - offset  # res2 / p2 / fpn_*2 = our index 0


HEADS = {
    # SemSegFPNHead: p2.0; p3.0; p4.0, p4.2; p5.0, p5.2, p5.4 (convs at even indices, upsampling between)
    "fpn": regex_rename([
        (r"p([2-5])\.(\d+)\.weight", lambda m: f"scale_heads.{_level(m)}.{m[2]}.0.weight"),
        (r"p([2-5])\.(\d+)\.norm\.(weight|bias)", lambda m: f"scale_heads.{_level(m)}.{m[2]}.1.{m[3]}"),
        *PREDICTOR,
    ]),
    # ASPP: convs.0 = 1x1, convs.1..3 = dilations 6, 12, 18 (our branches 1..4), convs.4.1 = pooling (our 0)
    "aspp": regex_rename([
        (r"aspp\.convs\.([0-3])\.weight", lambda m: f"aspp.branches.{int(m[1]) + 1}.0.weight"),
        (rf"aspp\.convs\.([0-3])\.norm\.({BN_LEAVES})", lambda m: f"aspp.branches.{int(m[1]) + 1}.1.{m[2]}"),
        (r"aspp\.convs\.4\.1\.(weight|bias)", r"aspp.branches.0.conv.0.\1"),
        (r"aspp\.project\.weight", lambda m: Mapped("aspp.bottleneck.0.weight", pool_first, POOL_LAST_WHY)),
        (rf"aspp\.project\.norm\.({BN_LEAVES})", r"aspp.bottleneck.1.\1"),
        *PREDICTOR,
    ]),
}
FPN = regex_rename([
    (r"lateral([2-5])\.(weight|bias)", lambda m: f"lateral.{_level(m)}.{m[2]}"),
    (r"output([2-5])\.(weight|bias)", lambda m: f"output.{_level(m)}.{m[2]}"),
])
EMBED_BIAS = r"refine\.stages\.\d+\.(query|value)\.bias"
NATTEN_NOTE = "the PNA head is stored under its older name 'natten_head' (read as 'pna_head')"


def sections(spec: ModelSpec) -> list[Section]:
    """The name table for the model of ``spec``: one section per part of their model."""
    if spec.head not in HEADS:
        raise AuthorsCheckpointError(f"no Detectron2 name table for head {spec.head!r}; covered: {sorted(HEADS)}")
    if spec.refine not in (None, "nam", "nam+sam"):
        raise AuthorsCheckpointError(f"no Detectron2 name table for refinement {spec.refine!r} (the authors "
                                     "released PNA)")
    if spec.backbone not in ("resnet52", "resnet103"):
        raise AuthorsCheckpointError(f"the authors' Detectron2 branch uses R-52 / R-103, not {spec.backbone!r}")
    fpn = spec.head == "fpn"
    table = [Section("backbone", "backbone.bottom_up." if fpn else "backbone.", "backbone.body.", _detectron2)]
    if fpn:
        table.append(Section("FPN", "backbone.fpn_", "head.fpn.", FPN))
    coarse = "sem_seg_head.coarse_sem_seg_head." if spec.refine else "sem_seg_head."
    table.append(Section("coarse head", coarse, "head.", HEADS[spec.head]))
    if spec.refine:
        rename = pna_rename({f"res{i}": 5 - i for i in range(2, 6)}.get)  # res5 = our stage 0
        table += [Section("refinement", "sem_seg_head.pna_head.", "refine.", rename),
                  Section("refinement", "sem_seg_head.natten_head.", "refine.", rename, note=NATTEN_NOTE)]
    return table


def zero_fill(spec: ModelSpec) -> dict[str, str]:
    """Our tensors the file may lack: the embeddings' biases of a row built with them (theirs have none)."""
    return {EMBED_BIAS: "their Detectron2 embeddings have no bias"} if spec.embed_bias and spec.refine else {}
