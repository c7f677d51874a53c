"""The typed configuration of one training run: data, model, optimiser, schedule, evaluation.

One :class:`Config` describes a (paper-table row, profile) pair. It is plain data: JSON round-trips
it (:func:`pna.configs.overrides.config_from_dict`), :func:`config_hash` names it, and
:func:`pna.configs.overrides.apply_overrides` changes it by dotted name with type checking, and
:func:`validate` refuses values that make no sense (``train.iters=0``, a negative learning rate) with
one line naming the key and what is expected, before anything is built.

Example::

    >>> cfg = Config(table="table1", row="fcn_r50_os32", profile="smoke")
    >>> len(config_hash(cfg)), config_hash(cfg) == config_hash(Config(table="table7", row="other"))
    (64, True)
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
import typing
from dataclasses import asdict, dataclass, field


@dataclass
class DataConfig:
    """Which dataset, which splits, the augmentation of the training crops, the test resize."""

    dataset: str = "synthetic"          # name for pna.data.build_dataset (training split)
    root: str | None = None             # None: the synthetic generated cache, else the dataset folder
    train_split: str = "train"
    eval_dataset: str | None = None     # None: same as `dataset` (VOC trains on voc_aug, tests on voc)
    eval_split: str = "val"
    crop: tuple[int, int] = (512, 512)  # (height, width) of the random training crop
    scale_range: tuple[float, float] = (0.5, 2.0)  # random rescale factor range
    scale_base: tuple[int, int] | None = None  # (short, long) the factor multiplies (MMSeg img_scale); None: the image
    short_sides: tuple[int, ...] | None = None  # Detectron2: training short side drawn from these (replaces scale_range)
    max_size: int | None = None         # Detectron2: long-side cap of that resize
    cat_max_ratio: float | None = None  # re-draw the crop (10 tries) while one class covers more than this
    flip: bool = True
    photometric: bool = True            # brightness, contrast, saturation, hue (never a channel swap)
    hue: tuple[int, int] = (-18, 18)    # inclusive hue-shift range (OpenCV units); MMSeg draws (-18, 17)
    pad: str = "crop"                   # crop: pad each sample to `crop` after normalisation (MMSeg);
    #                                     batch: pad each batch to its largest H, W rounded to the model's divisor (Detectron2)
    antialias: bool = True              # antialias image downscaling (PIL-like, Detectron2); False: cv2-like (MMSeg)
    crop_tries: int = 10                # crop draws under cat_max_ratio (Detectron2 10; MMSeg 10 checks + 1 = 11)
    eval_short_side: int | None = 512   # resize for evaluation; None keeps the original size
    eval_max_size: int | None = None    # long-side cap of the evaluation resize
    options: dict = field(default_factory=dict)  # extra build_dataset kwargs (synthetic sizes, seed)
    eval_options: dict = field(default_factory=dict)  # build_dataset kwargs for the evaluation set, over `options`


@dataclass
class ModelConfig:
    """A registry row name for pna.models.create_model and its keyword overrides."""

    name: str = "fcn_r50_os32"
    overrides: dict = field(default_factory=dict)  # e.g. backbone, window_size, pretrained
    loss: dict = field(default_factory=dict)       # kwargs for pna.models.SegmentationLoss
    allow_random_init: bool = True      # False: a backbone without pretrained weights is an error


@dataclass
class OptimConfig:
    """AdamW (or SGD with momentum: SegFix's recipe) with a linear warmup into a polynomial decay."""

    optimizer: str = "adamw"            # adamw | sgd (pna.engine.optim.OPTIMIZERS)
    momentum: float = 0.9               # sgd only
    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_iters: int = 0
    warmup_ratio: float = 1e-6          # lr factor at iteration 0 of the warmup
    poly_power: float = 0.9
    min_lr: float = 0.0
    clip_grad: float | None = None      # max global grad norm; None: no clipping
    decay_rule: str = "default"         # which parameters get no weight decay, see pna.engine.optim.no_decay_names


def usable_cpus() -> int:
    """The CPUs this process may use (its affinity mask on Linux, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers(most: int = 4) -> int:
    """Loader worker processes: ``most``, but never more than the CPUs this process may use."""
    return max(0, min(most, usable_cpus()))


@dataclass
class TrainConfig:
    """The iteration-based loop. `batch_size` is the effective batch over all processes and
    accumulation steps: processes x `micro_batch` x accumulation (:mod:`pna.engine.batch_split`)."""

    iters: int = 20000
    batch_size: int = 16
    micro_batch: int | None = None      # images per forward/backward per process; None: batch_size / processes
    eval_interval: int = 2000           # 0: evaluate only at the end
    checkpoint_interval: int = 2000
    log_interval: int = 50
    seed: int = 0
    amp: bool = True                    # only used on CUDA
    workers: int = field(default_factory=lambda: default_workers())  # data-loader processes
    syncbn: bool = True                 # only used when world size > 1
    device: str = "auto"                # auto | cpu | cuda
    # CUDA: torch.use_deterministic_algorithms + cuDNN without benchmarking (pna.engine.train);
    # slower (no cuDNN autotuning, deterministic scatter/index kernels) and it warns where no
    # deterministic kernel exists (bilinear interpolation backward): the run is then not bitwise
    # reproducible and says so
    deterministic: bool = False


@dataclass
class EvalConfig:
    """Inference for evaluation: whole image, or sliding windows of `crop` every `stride`."""

    mode: str = "whole"                 # whole | slide
    crop: tuple[int, int] = (512, 512)
    stride: tuple[int, int] = (341, 341)
    batch_size: int = 1                 # images per forward pass (same-size images only)
    authors_classes: tuple[int, ...] | None = None  # also score as the authors' Detectron2 evaluator over these


@dataclass
class Config:
    """One training run: which paper table and row it reproduces, at which profile."""

    name: str = "voc/fcn_r50_os32"     # "<dataset key>/<row>", see pna.configs.list_configs()
    table: str = "table1"
    row: str = "fcn_r50_os32"
    profile: str = "smoke"              # smoke | paper
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return asdict(self)


# Fields that change how a run executes but not what it computes; left out of the hash so that
# a trained model is shared whatever the number of loader workers or the logging cadence.
# micro_batch too, like the process count: same images, gradient sum and schedule; only BatchNorm
# and hard-pixel mining see other groups (recorded, pna.engine.batch_split); a run resumes on any split.
_NOT_HASHED = {("train", "workers"), ("train", "log_interval"), ("train", "device"), ("train", "deterministic"),
               ("train", "micro_batch"), ("model", "allow_random_init")}
# Fields added after runs were cached: left out of the hash while they hold their default value,
# so that a config from before they existed keeps its hash (and its cached run).
_HASHED_WHEN_CHANGED = {"data": ("hue", "pad", "antialias", "crop_tries"), "eval": ("authors_classes",),
                        "optim": ("optimizer", "momentum")}
# Labels, not settings: two table rows that train the same thing (Table 4's and Table 7's smoke
# DeepLabV3, say) share one hash, so the run is trained once and reused by both.
_LABELS = ("name", "table", "row")


def config_hash(cfg: Config) -> str:
    """sha256 of the canonical JSON of the config (sorted keys; execution-only fields, the
    table/row labels and newer fields at their default dropped)."""
    data = cfg.to_dict()
    for section, key in _NOT_HASHED:
        data[section].pop(key, None)
    for section, keys in _HASHED_WHEN_CHANGED.items():
        defaults = asdict(typing.get_type_hints(Config)[section]())
        for key in keys:
            if json.dumps(data[section].get(key)) == json.dumps(defaults[key]):  # a tuple == its JSON list
                data[section].pop(key)
    for label in _LABELS:
        data.pop(label, None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=list)
    return hashlib.sha256(text.encode()).hexdigest()


def _number(value, low: float = -math.inf, high: float = math.inf, low_open: bool = False) -> bool:
    """``value`` is a finite number within [low, high] (``low_open``: (low, high])."""
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and (value > low if low_open else value >= low) and value <= high)


def _all(values, *bounds, **kw) -> bool:
    """Every one of ``values`` passes :func:`_number` with these bounds."""
    return values is not None and all(_number(v, *bounds, **kw) for v in values)


def _rules(cfg: Config) -> list[tuple[str, object, bool, str]]:
    """(key, value, whether it makes sense, what is expected) for every checked field."""
    t, o, d, e = cfg.train, cfg.optim, cfg.data, cfg.eval
    maybe = lambda v, *bounds, **kw: v is None or _number(v, *bounds, **kw)  # noqa: E731
    maybe_all = lambda v, *bounds: v is None or _all(v, *bounds)  # noqa: E731
    ordered = lambda pair, low, high, **kw: _all(pair, low, high, **kw) and pair[0] <= pair[1]  # noqa: E731
    whole = "a whole number >= 1"
    return [
        ("train.iters", t.iters, _number(t.iters, 1), f"{whole} (the iterations to train)"),
        ("train.batch_size", t.batch_size, _number(t.batch_size, 1), f"{whole} (images per optimiser step)"),
        ("train.micro_batch", t.micro_batch, maybe(t.micro_batch, 1), f"None or {whole}"),
        ("train.eval_interval", t.eval_interval, _number(t.eval_interval, 0), ">= 0 (0: evaluate only at the end)"),
        ("train.checkpoint_interval", t.checkpoint_interval, _number(t.checkpoint_interval, 0),
         ">= 0 (0: no periodic checkpoint)"),
        ("train.log_interval", t.log_interval, _number(t.log_interval, 1), whole),
        ("train.seed", t.seed, _number(t.seed, 0, 2 ** 31 - 1), "a whole number in 0 .. 2**31 - 1"),
        ("train.workers", t.workers, _number(t.workers, 0), ">= 0 (0: load data in the training process)"),
        ("train.device", t.device, isinstance(t.device, str) and re.fullmatch(r"auto|cpu|cuda(:\d+)?", t.device)
         is not None, "auto, cpu, cuda or cuda:N"),
        ("optim.lr", o.lr, _number(o.lr, 0, low_open=True), "a number > 0"),
        ("optim.weight_decay", o.weight_decay, _number(o.weight_decay, 0), "a number >= 0"),
        ("optim.betas", o.betas, _all(o.betas, 0, 1) and max(o.betas) < 1, "two numbers in [0, 1)"),
        ("optim.warmup_iters", o.warmup_iters, _number(o.warmup_iters, 0), "a whole number >= 0"),
        ("optim.warmup_ratio", o.warmup_ratio, _number(o.warmup_ratio, 0, 1),
         "a number in [0, 1] (the lr factor at iteration 0)"),
        ("optim.poly_power", o.poly_power, _number(o.poly_power, 0), "a number >= 0"),
        ("optim.min_lr", o.min_lr, _number(o.min_lr, 0, o.lr if _number(o.lr) else math.inf),
         "a number in [0, optim.lr]"),
        ("optim.clip_grad", o.clip_grad, maybe(o.clip_grad, 0, low_open=True), "None or a number > 0"),
        ("data.crop", d.crop, _all(d.crop, 1), "(height, width), each >= 1"),
        ("data.scale_range", d.scale_range, ordered(d.scale_range, 0, math.inf, low_open=True),
         "(low, high) with 0 < low <= high"),
        ("data.scale_base", d.scale_base, maybe_all(d.scale_base, 1), "None or (short, long), each >= 1"),
        ("data.short_sides", d.short_sides, maybe_all(d.short_sides, 1), "None or sizes >= 1"),
        ("data.max_size", d.max_size, maybe(d.max_size, 1), f"None or {whole}"),
        ("data.cat_max_ratio", d.cat_max_ratio, maybe(d.cat_max_ratio, 0, 1, low_open=True),
         "None or a fraction in (0, 1]"),
        ("data.hue", d.hue, ordered(d.hue, -180, 180), "(low, high) shifts in -180 .. 180, low <= high"),
        ("data.pad", d.pad, d.pad in ("crop", "batch"), "'crop' or 'batch'"),
        ("data.crop_tries", d.crop_tries, _number(d.crop_tries, 1), whole),
        ("data.eval_short_side", d.eval_short_side, maybe(d.eval_short_side, 1), f"None or {whole}"),
        ("data.eval_max_size", d.eval_max_size, maybe(d.eval_max_size, 1), f"None or {whole}"),
        ("eval.mode", e.mode, e.mode in ("whole", "slide"), "'whole' or 'slide'"),
        ("eval.crop", e.crop, _all(e.crop, 1), "(height, width), each >= 1"),
        ("eval.stride", e.stride, _all(e.stride, 1), "(height, width), each >= 1"),
        ("eval.batch_size", e.batch_size, _number(e.batch_size, 1), whole),
    ]


def validate(cfg: Config) -> Config:
    """``cfg`` if every checked value makes sense, else ValueError naming the first key that does not.

    >>> validate(Config()).train.iters
    20000
    >>> from dataclasses import replace
    >>> validate(replace(Config(), train=TrainConfig(iters=0)))
    Traceback (most recent call last):
    ...
    ValueError: train.iters=0: expected a whole number >= 1 (the iterations to train)
    """
    for key, value, ok, expected in _rules(cfg):
        if not ok:
            shown = repr(value if not isinstance(value, tuple) else tuple(value))
            raise ValueError(f"{key}={shown[:80]}: expected {expected}")
    return cfg
