"""The authors' per-row training settings, as the audit of their repository records them
(``docs/authors_audit.csv``, one line per setting with its source; summarised per row in
``docs/authors_settings.md``): the one place the paper profile is built from.

Two code bases trained the paper's rows: ``mm`` (their MMSegmentation 0.27 fork, branch
``mmsegmentation``: VOC, COCO-Stuff 10k) and ``d2`` (their Detectron2 code, branch ``main``:
Cityscapes, DeepGlobe, Trans10k). :data:`AUTHORS` holds one :class:`AuthorsSetting` per shipped
config; each row of :data:`pna.configs.rows.ROWS` names the setting it trains with and where its
setup comes from (``basis``). A value that no file of theirs shows (it comes from the paper, or is
our inference) says so in ``not_from_code``.

Example::

    >>> s = AUTHORS["cityscapes/deeplabv3"]
    >>> s.branch, s.output_stride, s.clip_grad, s.hard_mining, s.loss_mean
    ('d2', 16, 0.01, ('coarse', 'pna'), 'valid')
    >>> AUTHORS["voc/fcn"].source_of("gpus")
    'paper, Experimental Settings (4 GPUs); no script of the mm branch trains this config'
"""
from __future__ import annotations

from dataclasses import dataclass

# d2 short-side lists. Cityscapes and DeepGlobe: 512..2048 step 256; Trans10k: 16 values 256..1024,
# i.e. int(x * 0.1 * 512) for x = 5..20.
CITYSCAPES_SHORT_SIDES = tuple(range(512, 2049, 256))
TRANS10K_SHORT_SIDES = tuple(int(x * 0.1 * 512) for x in range(5, 21))
# Where a value of a setting is not read from the authors' code.
_MM_GPUS_FROM_PAPER = ("gpus", "paper, Experimental Settings (4 GPUs); no script of the mm branch trains this config")


@dataclass(frozen=True)
class AuthorsSetting:
    """One shipped config of the authors, in the audit's terms (docs/authors_audit.csv)."""

    branch: str                          # "mm" (MMSegmentation 0.27) | "d2" (Detectron2)
    audit_groups: tuple[str, ...]        # its group(s) in docs/authors_audit.csv (one per backbone)
    backbone: str                        # as the audit names it: ResNetV1c-50, R-52, Swin-T, ...
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
    loss_mean: str                       # "all": summed CE / every pixel (mm); "valid": over labelled pixels (d2)
    coarse_twice: bool                   # the mm cascade runs the coarse head twice per training step
    dropout_kind: str                    # before the coarse classifier: "channel" (Dropout2d) | "element" (d2 ASPP)
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
    cat_max_ratio: float                 # crop re-drawn while one class covers more ...
    crop_tries: int                      # ... up to this many draws (mm: 10 checks + 1 unchecked = 11; d2: 10)
    antialias: bool                      # image resize antialiased (d2: PIL) or not (mm: cv2 bilinear)
    hue: tuple[int, int]                 # photometric hue shift range, inclusive (mm numpy randint excludes 18)
    pad: str                             # "crop": pad to the crop after normalisation (mm); "batch": per batch (d2)
    test_short: int                      # test resize: short side ...
    test_max: int                        # ... with the long side capped
    drop_path: float | None = None       # Swin stochastic depth
    num_outputs_note: str = ""           # class setup when it differs from the dataset's
    not_from_code: tuple[tuple[str, str], ...] = ()  # (field, source) of values no file of theirs shows

    def source_of(self, field: str) -> str:
        """Where ``field``'s value comes from when it is not the authors' code ("" when it is)."""
        return dict(self.not_from_code).get(field, "")


_MM_COMMON = dict(branch="mm", stem=(32, 32, 64), res5_multigrid=None, embed_bias=True, aux=True,
                  hard_mining=(), loss_mean="all", coarse_twice=True, dropout_kind="channel",
                  crop_tries=11, antialias=False, hue=(-18, 17), pad="crop",
                  not_from_code=(_MM_GPUS_FROM_PAPER,),
                  resize_mode="nearest", decay_rule="mm", poly_power=0.9, clip_grad=None,
                  crop=(512, 512), train_resize="ratio", scale_base=(512, 2048), scale_range=(0.5, 2.0),
                  short_sides=None, max_size=None, cat_max_ratio=0.75, test_short=512, test_max=2048,
                  lr=1e-4, weight_decay=1e-4, warmup_iters=200, iters=20000, batch_per_gpu=4, gpus=4,
                  aspp_dilations=None, head_channels=512, window=9)
_MM_SWIN = dict(_MM_COMMON, backbone="", stem=None, output_stride=32, head="psp", lr=6e-5, weight_decay=0.01,
                poly_power=1.0, drop_path=0.3)
_D2_COMMON = dict(branch="d2", stem=(64, 64, 128), res5_multigrid=(1, 2, 4), embed_bias=False, aux=False,
                  loss_mean="valid", coarse_twice=False, dropout_kind="channel", crop_tries=10, antialias=True,
                  hue=(-18, 18), pad="batch",
                  decay_rule="d2", poly_power=0.9, clip_grad=0.01, lr=1e-4, weight_decay=0.01, warmup_iters=0,
                  batch_per_gpu=4, gpus=4, train_resize="short", scale_base=None, scale_range=None,
                  cat_max_ratio=0.75, window=7, resize_mode="nearest", aspp_dilations=None)

AUTHORS: dict[str, AuthorsSetting] = {
    "voc/fcn": AuthorsSetting(**dict(_MM_COMMON, audit_groups=("mm/voc/fcn_r50",), backbone="ResNetV1c-50",
                                     output_stride=32, head="fcn")),
    # The only mm config with a training script: 2 GPUs x 8 images.
    "voc/deeplabv3": AuthorsSetting(**dict(_MM_COMMON, audit_groups=("mm/voc/deeplabv3_r101",),
                                           backbone="ResNetV1c-101", output_stride=16, head="aspp",
                                           aspp_dilations=(1, 12, 24, 36), batch_per_gpu=8, gpus=2,
                                           not_from_code=())),
    "voc/psp": AuthorsSetting(**dict(_MM_COMMON, audit_groups=("mm/voc/psp_r101",), backbone="ResNetV1c-101",
                                     output_stride=16, head="psp")),
    "voc/psp_swin_t": AuthorsSetting(**dict(_MM_SWIN, audit_groups=("mm/voc/psp_swin_t",), backbone="Swin-T")),
    "voc/psp_swin_b": AuthorsSetting(**dict(_MM_SWIN, audit_groups=("mm/voc/psp_swin_b",), backbone="Swin-B")),
    "cocostuff10k/deeplabv3": AuthorsSetting(**dict(
        _MM_COMMON, audit_groups=("mm/cocostuff10k/deeplabv3_r50",), backbone="ResNetV1c-50", output_stride=16,
        head="aspp", aspp_dilations=(1, 12, 24, 36), warmup_iters=400, iters=40000)),
    "cityscapes/deeplabv3": AuthorsSetting(**dict(
        _D2_COMMON, audit_groups=("d2/cityscapes/deeplabv3_r52", "d2/cityscapes/deeplabv3_r103"),
        backbone="R-52 / R-103", output_stride=16, head="aspp", head_channels=256, dropout_kind="element",
        aspp_dilations=(1, 6, 12, 18), window=9, hard_mining=("coarse", "pna"), iters=90000, crop=(512, 1024),
        short_sides=CITYSCAPES_SHORT_SIDES, max_size=4096, test_short=1024, test_max=2048)),
    "cityscapes/fpn": AuthorsSetting(**dict(
        _D2_COMMON, audit_groups=("d2/cityscapes/fpn_r52", "d2/cityscapes/fpn_r103"), backbone="R-52 / R-103",
        output_stride=32, head="fpn", head_channels=128, hard_mining=(),
        iters=90000, crop=(512, 1024), short_sides=CITYSCAPES_SHORT_SIDES, max_size=4096,
        test_short=1024, test_max=2048)),
    "deepglobe/fpn": AuthorsSetting(**dict(
        _D2_COMMON, audit_groups=("d2/deepglobe/fpn_r52",), backbone="R-52", output_stride=32, head="fpn",
        head_channels=128, hard_mining=("pna",),
        iters=4000, crop=(508, 508), short_sides=CITYSCAPES_SHORT_SIDES, max_size=4096,
        test_short=1024, test_max=2048,
        num_outputs_note="7 outputs (unknown trained as a class); scored over the 6 land classes at 2448x2448, "
                         "unknown ground truth kept",
        not_from_code=(("num_outputs_note", "the scoring is the paper's text (Experiments on DeepGlobe: following "
                        "MagNet, VinAIResearch/MagNet@7f5b876:magnet/utils/metrics.py:77); the authors' evaluator "
                        "scores label ids 0..5 and drops id 6 (main:pna/datasets/register_deep_globe.py:33-40): "
                        "barren in MagNet's encoding, which their colour table follows"),))),
    "trans10k/fpn": AuthorsSetting(**dict(
        _D2_COMMON, audit_groups=("d2/trans10k/fpn_r52",), backbone="R-52", output_stride=32, head="fpn",
        head_channels=128, hard_mining=("pna",),
        resize_mode="bilinear", iters=8000, crop=(512, 512), short_sides=TRANS10K_SHORT_SIDES, max_size=2048,
        test_short=512, test_max=2048,
        num_outputs_note="3 outputs (background, things, stuff); the table's mIoU is over things and stuff",
        not_from_code=(("num_outputs_note", "the paper's Table 6 mIoU covers things and stuff (paper, Experiments on "
                        "Trans10k); the authors' evaluator averages all 3 classes (main:pna/datasets/"
                        "register_trans10k.py:17), recorded beside ours as mIoU_authors"),))),
}
