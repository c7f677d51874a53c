"""The authors' per-row training settings, as the audit of their shipped config files records them
(``docs/authors_audit.csv``): the one place the paper profile is built from.

Two code bases trained the paper's rows: ``mm`` (MMSegmentation 0.27: VOC, COCO-Stuff 10k) and
``d2`` (Detectron2: Cityscapes, DeepGlobe, Trans10k). :data:`AUTHORS` holds one
:class:`AuthorsSetting` per shipped config; each row of :data:`pna.configs.rows.ROWS` names the
setting it trains with and where its setup comes from (``basis``).

Example::

    >>> s = AUTHORS["cityscapes/deeplabv3"]
    >>> s.branch, s.output_stride, s.clip_grad, s.hard_mining
    ('d2', 16, 0.01, ('coarse', 'pna'))
"""
from __future__ import annotations

from dataclasses import dataclass

# d2 short-side lists. Cityscapes and DeepGlobe: 512..2048 step 256; Trans10k: 16 values 256..1024,
# i.e. int(x * 0.1 * 512) for x = 5..20.
CITYSCAPES_SHORT_SIDES = tuple(range(512, 2049, 256))
TRANS10K_SHORT_SIDES = tuple(int(x * 0.1 * 512) for x in range(5, 21))


@dataclass(frozen=True)
class AuthorsSetting:
    """One shipped config of the authors (SPEC "Per-row settings"), in SPEC's terms."""

    branch: str                          # "mm" (MMSegmentation 0.27) | "d2" (Detectron2)
    backbone: str                        # as SPEC names it: ResNetV1c-50, R-52, Swin-T, ...
    stem: tuple[int, int, int] | None    # deep-stem widths (None: Swin)
    output_stride: int
    res5_multigrid: tuple[int, ...] | None  # DeepLab multi-grid dilations of res5's blocks
    head: str                            # coarse head, our head name
    head_channels: int
    aspp_dilations: tuple[int, ...] | None  # 1 = the 1x1 branch (our ASPP's convention)
    window: int
    resize_mode: str                     # how P_{m-1} is resized to F_m
    embed_bias: bool                     # the PNA head's 1x1 query/value embeddings have a bias
    aux: bool                            # auxiliary FCN head on res4 (weight 0.4)
    hard_mining: tuple[str, ...]         # heads with top-20% hard pixels: "coarse", "pna"
    lr: float
    weight_decay: float
    decay_rule: str                      # which parameters get no weight decay ("mm" | "d2")
    poly_power: float
    warmup_iters: int
    clip_grad: float | None              # full-model gradient-norm clipping
    iters: int
    batch_per_gpu: int
    gpus: int
    crop: tuple[int, int]
    train_resize: str                    # "ratio": img_scale x ratio; "short": short side from a list
    scale_base: tuple[int, int] | None   # mm img_scale (short, long) the ratio multiplies
    scale_range: tuple[float, float] | None
    short_sides: tuple[int, ...] | None  # d2 training short sides
    max_size: int | None                 # d2 training long-side cap
    cat_max_ratio: float                 # crop re-drawn (10 tries) while one class covers more
    test_short: int                      # test resize: short side ...
    test_max: int                        # ... with the long side capped
    drop_path: float | None = None       # Swin stochastic depth
    num_outputs_note: str = ""           # class setup when it differs from the dataset's


_MM_COMMON = dict(branch="mm", stem=(32, 32, 64), res5_multigrid=None, embed_bias=True, aux=True,
                  hard_mining=(), resize_mode="nearest", decay_rule="mm", poly_power=0.9, clip_grad=None,
                  crop=(512, 512), train_resize="ratio", scale_base=(512, 2048), scale_range=(0.5, 2.0),
                  short_sides=None, max_size=None, cat_max_ratio=0.75, test_short=512, test_max=2048,
                  lr=1e-4, weight_decay=1e-4, warmup_iters=200, iters=20000, batch_per_gpu=4, gpus=4,
                  aspp_dilations=None, head_channels=512, window=9)
_MM_SWIN = dict(_MM_COMMON, backbone="", stem=None, output_stride=32, head="psp", lr=6e-5, weight_decay=0.01,
                poly_power=1.0, drop_path=0.3)
_D2_COMMON = dict(branch="d2", stem=(64, 64, 128), res5_multigrid=(1, 2, 4), embed_bias=False, aux=False,
                  decay_rule="d2", poly_power=0.9, clip_grad=0.01, lr=1e-4, weight_decay=0.01, warmup_iters=0,
                  batch_per_gpu=4, gpus=4, train_resize="short", scale_base=None, scale_range=None,
                  cat_max_ratio=0.75, window=7, resize_mode="nearest", aspp_dilations=None)

AUTHORS: dict[str, AuthorsSetting] = {
    "voc/fcn": AuthorsSetting(**dict(_MM_COMMON, backbone="ResNetV1c-50", output_stride=32, head="fcn")),
    "voc/deeplabv3": AuthorsSetting(**dict(_MM_COMMON, backbone="ResNetV1c-101", output_stride=16, head="aspp",
                                           aspp_dilations=(1, 12, 24, 36), batch_per_gpu=8, gpus=2)),
    "voc/psp": AuthorsSetting(**dict(_MM_COMMON, backbone="ResNetV1c-101", output_stride=16, head="psp")),
    "voc/psp_swin_t": AuthorsSetting(**dict(_MM_SWIN, backbone="Swin-T")),
    "voc/psp_swin_b": AuthorsSetting(**dict(_MM_SWIN, backbone="Swin-B")),
    "cocostuff10k/deeplabv3": AuthorsSetting(**dict(
        _MM_COMMON, backbone="ResNetV1c-50", output_stride=16, head="aspp", aspp_dilations=(1, 12, 24, 36),
        warmup_iters=400, iters=40000)),
    "cityscapes/deeplabv3": AuthorsSetting(**dict(
        _D2_COMMON, backbone="R-52 / R-103", output_stride=16, head="aspp", head_channels=256,
        aspp_dilations=(1, 6, 12, 18), window=9, hard_mining=("coarse", "pna"), iters=90000, crop=(512, 1024),
        short_sides=CITYSCAPES_SHORT_SIDES, max_size=4096, test_short=1024, test_max=2048)),
    "cityscapes/fpn": AuthorsSetting(**dict(
        _D2_COMMON, backbone="R-52 / R-103", output_stride=32, head="fpn", head_channels=128, hard_mining=(),
        iters=90000, crop=(512, 1024), short_sides=CITYSCAPES_SHORT_SIDES, max_size=4096,
        test_short=1024, test_max=2048)),
    "deepglobe/fpn": AuthorsSetting(**dict(
        _D2_COMMON, backbone="R-52", output_stride=32, head="fpn", head_channels=128, hard_mining=("pna",),
        iters=4000, crop=(508, 508), short_sides=CITYSCAPES_SHORT_SIDES, max_size=4096,
        test_short=1024, test_max=2048,
        num_outputs_note="7 outputs (unknown trained as a class); scored over the 6 land classes at 2448x2448")),
    "trans10k/fpn": AuthorsSetting(**dict(
        _D2_COMMON, backbone="R-52", output_stride=32, head="fpn", head_channels=128, hard_mining=("pna",),
        resize_mode="bilinear", iters=8000, crop=(512, 512), short_sides=TRANS10K_SHORT_SIDES, max_size=2048,
        test_short=512, test_max=2048,
        num_outputs_note="3 outputs (background, things, stuff); the table's mIoU is over things and stuff")),
}
