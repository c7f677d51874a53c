"""What a config builds: its training set, evaluation set and model (shared by train, evaluate,
the notebooks and the rehearsal, so that each is built one way).

Example::

    >>> from pna.configs import load_config
    >>> cfg = load_config("voc/fcn_r50_os32_pna", "paper")
    >>> build_train_transform_of(cfg).transforms[0].__class__.__name__
    'RandomRescale'
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from pna.engine import distributed as dist
from pna.configs import Config


def build_train_transform_of(cfg: Config):
    """The training transform of ``cfg.data`` (resize, category-area crop, flip, photometric,
    normalisation, padding)."""
    from pna.data.transforms import build_train_transform

    d = cfg.data
    return build_train_transform(d.crop, d.scale_range, d.flip, d.photometric, base_size=d.scale_base,
                                 short_sides=d.short_sides, max_size=d.max_size, cat_max_ratio=d.cat_max_ratio,
                                 pad=d.pad, antialias=d.antialias, crop_tries=d.crop_tries, hue=d.hue)


def build_eval_transform_of(cfg: Config):
    """The test-time transform of ``cfg.data`` (short-side resize with the long side capped, normalisation)."""
    from pna.data.transforms import build_eval_transform

    d = cfg.data
    return build_eval_transform(d.eval_short_side, d.eval_max_size, d.antialias)


def build_train_set(cfg: Config):
    from pna.data import build_dataset

    d = cfg.data
    return build_dataset(d.dataset, d.root, d.train_split, transform=build_train_transform_of(cfg), **d.options)


def build_eval_set(cfg: Config):
    from pna.data import build_dataset

    d = cfg.data
    return build_dataset(d.eval_dataset or d.dataset, d.root, d.eval_split, transform=build_eval_transform_of(cfg),
                         **{**d.options, **d.eval_options})


def create_model_of(cfg: Config, num_classes: int) -> nn.Module:
    """The Segmentor of ``cfg.model`` (random init of the backbone refused unless allowed)."""
    from pna.models import create_model, get_spec
    from pna.models.backbones.weights import RANDOM_INIT_BACKBONES

    spec = get_spec(cfg.model.name, **cfg.model.overrides)
    if spec.pretrained is None and not cfg.model.allow_random_init and spec.backbone not in RANDOM_INIT_BACKBONES:
        raise ValueError(
            f"{cfg.name} ({cfg.profile}): backbone {spec.backbone!r} has no pretrained weights and "
            "model.allow_random_init is False; the paper starts from ImageNet-1k weights. Pass them "
            "(notebook parameter `weights`, or --set model.overrides.pretrained=PATH), or allow random "
            "init explicitly (allow_random_init=True / --set model.allow_random_init=True)")
    return create_model(cfg.model.name, num_classes, **cfg.model.overrides)


def build_model(cfg: Config, num_classes: int, device: torch.device) -> nn.Module:
    """The model of ``cfg`` on ``device``, BatchNorm synchronised across DDP ranks when asked."""
    model = create_model_of(cfg, num_classes)
    if dist.world_size() > 1 and cfg.train.syncbn:
        model = dist.convert_sync_batchnorm(model, device)
    return model.to(device)


def model_from_checkpoint(checkpoint: dict, source: str | Path = "checkpoint") -> nn.Module:
    """The Segmentor described by a checkpoint's config, with its weights loaded (no backbone
    weights file is read: the checkpoint holds every weight). Its classes are those of the dataset
    it was trained on, whatever set it is evaluated on. Weights that do not fit that model are a
    one-line error naming ``source`` (the file) and the first keys that differ."""
    from pna.configs import config_from_dict
    from pna.data.catalog import info
    from pna.models import create_model

    cfg = config_from_dict(checkpoint["config"])
    num_classes = info(cfg.data.dataset).num_classes
    overrides = {**cfg.model.overrides, "pretrained": None}
    import warnings
    with warnings.catch_warnings():  # the random init the warning is about is overwritten just below
        warnings.filterwarnings("ignore", message=".*RANDOMLY INITIALISED.*")
        model = create_model(cfg.model.name, num_classes, **overrides)
    from pna.engine.preflight import check_weights_fit
    check_weights_fit(model, checkpoint["model"], source, f"{cfg.model.name} ({cfg.name}, {cfg.profile} profile)")
    model.load_state_dict(checkpoint["model"])
    return model


def load_run(run_dir: str | Path, cfg, device: torch.device | str = "cpu") -> tuple[nn.Module, object]:
    """The model in ``run_dir/final.pt`` (eval mode) and the evaluation dataset of ``cfg``."""
    from pna.engine.checkpoint import load_checkpoint

    checkpoint_path = Path(run_dir) / "final.pt"
    if not checkpoint_path.is_file():
        raise FileNotFoundError(f"{checkpoint_path} not found: the run in {run_dir} did not finish or was removed")
    dataset = build_eval_set(cfg)
    checkpoint = load_checkpoint(checkpoint_path, map_location=device)
    model = model_from_checkpoint(checkpoint, checkpoint_path).to(device).eval()
    return model, dataset


def with_weights(cfg: Config, weights=None, allow_random_init: bool | None = None) -> Config:
    """``cfg`` with its backbone's pretrained file resolved from ``weights`` (a file, a folder of
    documented names, or a mapping backbone -> file) and ``model.allow_random_init`` set if given."""
    from pna.configs import apply_overrides
    from pna.models import get_spec
    from pna.models.backbones import resolve_pretrained

    changes = {} if allow_random_init is None else {"model.allow_random_init": bool(allow_random_init)}
    if weights is not None:
        path = resolve_pretrained(weights, get_spec(cfg.model.name, **cfg.model.overrides).backbone)
        if path is not None:
            changes["model.overrides.pretrained"] = str(path)
    return apply_overrides(cfg, changes)
