"""The typed configuration of one training run: data, model, optimiser, schedule, evaluation.

One :class:`Config` describes a (paper-table row, profile) pair. It is plain data: JSON round-trips
it (:func:`config_from_dict`), :func:`config_hash` names it, and :func:`apply_overrides` changes it
by dotted name with type checking.

Example::

    >>> cfg = Config(table="table1", row="fcn_r50_os32", profile="smoke")
    >>> cfg = apply_overrides(cfg, ["optim.lr=2e-4", "model.overrides.window_size=5"])
    >>> cfg.optim.lr, cfg.model.overrides["window_size"]
    (0.0002, 5)
"""
from __future__ import annotations

import ast
import copy
import dataclasses
import hashlib
import json
import os
import types
import typing
from dataclasses import asdict, dataclass, field
from typing import Any


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
    """AdamW with a linear warmup into a polynomial decay."""

    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_iters: int = 0
    warmup_ratio: float = 1e-6          # lr factor at iteration 0 of the warmup
    poly_power: float = 0.9
    min_lr: float = 0.0
    clip_grad: float | None = None      # max global grad norm; None: no clipping
    decay_rule: str = "default"         # which parameters get no weight decay, see pna.engine.optim.no_decay_names


def default_workers(most: int = 4) -> int:
    """Loader worker processes: ``most``, but never more than the CPUs this process may use."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count() or 1
    return max(0, min(most, usable))


@dataclass
class TrainConfig:
    """The iteration-based loop. `batch_size` is the effective batch over all processes."""

    iters: int = 20000
    batch_size: int = 16
    eval_interval: int = 2000           # 0: evaluate only at the end
    checkpoint_interval: int = 2000
    log_interval: int = 50
    seed: int = 0
    amp: bool = True                    # only used on CUDA
    workers: int = field(default_factory=lambda: default_workers())  # data-loader processes
    syncbn: bool = True                 # only used when world size > 1
    device: str = "auto"                # auto | cpu | cuda


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
_NOT_HASHED = {("train", "workers"), ("train", "log_interval"), ("train", "device"),
               ("model", "allow_random_init")}
# Fields added after runs were cached: left out of the hash while they hold their default value,
# so that a config from before they existed keeps its hash (and its cached run).
_HASHED_WHEN_CHANGED = {"data": ("hue", "pad", "antialias", "crop_tries"), "eval": ("authors_classes",)}
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


def config_from_dict(data: dict) -> Config:
    """Rebuild a Config from ``Config.to_dict()`` output (e.g. stored in a checkpoint)."""
    sections = {f.name: f for f in dataclasses.fields(Config)}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in sections:
            raise ValueError(f"config: unknown key {key!r}; expected one of {sorted(sections)}")
        hints = typing.get_type_hints(Config)
        cls = hints[key]
        if dataclasses.is_dataclass(cls):
            kwargs[key] = cls(**{k: _check_type(f"{key}.{k}", v, typing.get_type_hints(cls)[k])
                                 for k, v in value.items()})
        else:
            kwargs[key] = value
    return Config(**kwargs)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check_type(key: str, value: Any, tp: Any) -> Any:
    """Return `value` coerced to `tp` (int -> float, list -> tuple) or raise ValueError."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        for option in options:
            if option is type(None):
                continue
            try:
                return _check_type(key, value, option)
            except ValueError:
                pass
        raise ValueError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[int, ...]: any length, one item type
            if not isinstance(value, (list, tuple)) or not value:
                raise ValueError(f"{key}: expected a non-empty tuple ({_type_name(tp)}), got {value!r}")
            return tuple(_check_type(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value))
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ValueError(f"{key}: expected a tuple of {len(args)} ({_type_name(tp)}), got {value!r}")
        return tuple(_check_type(f"{key}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key}: expected bool, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key}: expected int, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key}: expected float, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{key}: expected str, got {value!r}")
        return value
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{key}: expected dict, got {value!r}")
        return copy.deepcopy(value)
    raise ValueError(f"{key}: unsupported field type {_type_name(tp)}")


def _parse_text(key: str, text: str, tp: Any) -> Any:
    """Turn command-line text into a value of `tp`: Python literals, bare words for str fields."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text  # a bare word, e.g. data.dataset=voc
    if tp is str and not isinstance(value, str):
        value = text  # a str field keeps its text even when it looks like a number
    if isinstance(value, str) and value.lower() in ("true", "false") and tp is bool:
        value = value.lower() == "true"
    return _check_type(key, value, tp)


def _split_override(item: str) -> tuple[str, str]:
    if "=" not in item:
        raise ValueError(f"override {item!r}: expected KEY=VALUE, e.g. optim.lr=2e-4")
    key, text = item.split("=", 1)
    return key.strip(), text.strip()


def apply_overrides(cfg: Config, overrides: dict[str, Any] | list[str] | None) -> Config:
    """A copy of `cfg` with dotted-name overrides applied.

    `overrides` is a list of ``"section.key=literal"`` strings (command line) or a dict of
    dotted names to values (notebooks). Strings in the list are parsed by the field's type.
    Keys under ``model.overrides.``, ``model.loss.`` and ``data.options.`` are free-form dict
    entries. An unknown key or a value of the wrong type raises ValueError.
    """
    cfg = copy.deepcopy(cfg)
    if not overrides:
        return cfg
    items = (
        [(k, v, False) for k, v in overrides.items()] if isinstance(overrides, dict)
        else [(*_split_override(s), True) for s in overrides]
    )
    for key, value, is_text in items:
        _set(cfg, key, value, is_text)
    return cfg


def _set(cfg: Config, key: str, value: Any, is_text: bool) -> None:
    parts = key.split(".")
    top = {f.name for f in dataclasses.fields(Config)}
    if parts[0] not in top:
        raise ValueError(f"override {key!r}: unknown key {parts[0]!r}; expected one of {sorted(top)}")
    target: Any = cfg
    for depth, name in enumerate(parts):
        last = depth == len(parts) - 1
        if isinstance(target, dict):
            if not last:
                raise ValueError(f"override {key!r}: {'.'.join(parts[:depth])} entries are not nested")
            target[name] = _parse_free(value) if is_text else value
            return
        fields = {f.name: f for f in dataclasses.fields(target)}
        if name not in fields:
            path = ".".join(parts[:depth]) or "config"
            raise ValueError(f"override {key!r}: unknown key {name!r} in {path}; "
                             f"expected one of {sorted(fields)}")
        tp = typing.get_type_hints(type(target))[name]
        if last:
            if dataclasses.is_dataclass(tp):
                raise ValueError(f"override {key!r}: {name} is a section; set one of its keys")
            new = _parse_text(key, value, tp) if is_text else _check_type(key, value, tp)
            setattr(target, name, new)
            return
        target = getattr(target, name)
    raise ValueError(f"override {key!r}: incomplete key")


def _parse_free(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text
