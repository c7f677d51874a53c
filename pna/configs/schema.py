"""The typed configuration of one training run: data, model, optimiser, schedule, evaluation.

One :class:`Config` describes a (paper-table row, profile) pair. It is plain data: JSON round-trips
it (:func:`pna.configs.overrides.config_from_dict`), :func:`config_hash` names it, and
:func:`pna.configs.overrides.apply_overrides` changes it by dotted name with type checking.

Example::

    >>> cfg = Config(table="table1", row="fcn_r50_os32", profile="smoke")
    >>> len(config_hash(cfg)), config_hash(cfg) == config_hash(Config(table="table7", row="other"))
    (64, True)
"""
from __future__ import annotations

import hashlib
import json
import os
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
