"""Override and JSON coercion: one setting gives one value type and one config hash, however it is written.

The hash is the sha256 of the config's JSON (pna.configs.schema.config_hash), where an int and a float
print differently (``1`` and ``1.0``): an int kept in a float field would give a run that
``--set optim.lr=1.0`` describes a second hash, and its cached run would not be found again.
"""
import dataclasses
import json
import re
import types
import typing

import pytest

from pna.configs import Config, OptimConfig, apply_overrides, config_from_dict, config_hash, list_configs, load_config

BASE = Config()


def _json_with(section: str, key: str, value) -> dict:
    data = json.loads(json.dumps(BASE.to_dict()))
    data[section][key] = value
    return data


def test_an_int_for_a_float_field_gives_the_float_and_its_hash():
    float_cfg = dataclasses.replace(BASE, optim=dataclasses.replace(BASE.optim, lr=1.0))
    ways = {
        "--set optim.lr=1": apply_overrides(BASE, ["optim.lr=1"]),
        "--set optim.lr=1.0": apply_overrides(BASE, ["optim.lr=1.0"]),
        "--set optim.lr=1e0": apply_overrides(BASE, ["optim.lr=1e0"]),
        "{optim.lr: 1}": apply_overrides(BASE, {"optim.lr": 1}),
        "JSON lr 1": config_from_dict(_json_with("optim", "lr", 1)),
    }
    for way, cfg in ways.items():
        assert type(cfg.optim.lr) is float and cfg.optim.lr == 1.0, way
        assert config_hash(cfg) == config_hash(float_cfg), way
    # the coercion is what makes them equal: the same config holding the int 1 hashes otherwise
    raw_int = dataclasses.replace(BASE, optim=dataclasses.replace(BASE.optim, lr=1))
    assert config_hash(raw_int) != config_hash(float_cfg)


@pytest.mark.parametrize("override, dict_value, get, expected", [
    ("optim.clip_grad=1", 1, lambda c: c.optim.clip_grad, 1.0),           # float | None
    ("optim.betas=(0, 0)", [0, 0], lambda c: c.optim.betas, (0.0, 0.0)),  # tuple[float, float]; beta < 1
    ("data.scale_range=(1, 2)", [1, 2], lambda c: c.data.scale_range, (1.0, 2.0)),
    ("data.cat_max_ratio=1", 1, lambda c: c.data.cat_max_ratio, 1.0),     # float | None
])
def test_ints_inside_optional_and_tuple_float_fields_become_floats(override, dict_value, get, expected):
    key = override.split("=")[0]
    for cfg in (apply_overrides(BASE, [override]), apply_overrides(BASE, {key: dict_value})):
        value = get(cfg)
        assert value == expected
        assert all(type(v) is float for v in (value if isinstance(value, tuple) else (value,))), (override, value)
    floats = apply_overrides(BASE, {key: expected})
    assert config_hash(apply_overrides(BASE, [override])) == config_hash(floats)


@pytest.mark.parametrize("override, message", [
    ("train.iters=True", "train.iters: expected int, got True"),                       # bool is not an int
    ("train.micro_batch=True", "train.micro_batch: expected int | None, got True"),
    ("optim.lr=True", "optim.lr: expected float, got True"),                           # nor a float
    ("train.amp=1", "train.amp: expected bool, got 1"),                                # nor an int a bool
    ("train.micro_batch=2.0", "train.micro_batch: expected int | None, got 2.0"),
    ("train.iters=3.0", "train.iters: expected int, got 3.0"),                         # no silent truncation
])
def test_bools_and_ints_are_not_taken_for_each_other(override, message):
    key, text = override.split("=")
    value = True if text == "True" else json.loads(text)
    section, field = key.split(".")
    for attempt in (lambda: apply_overrides(BASE, [override]), lambda: apply_overrides(BASE, {key: value}),
                    lambda: config_from_dict(_json_with(section, field, value))):
        with pytest.raises(ValueError, match=re.escape(message)):
            attempt()


def test_an_int_for_an_optional_int_field_stays_an_int():
    for cfg in (apply_overrides(BASE, ["train.micro_batch=2"]), apply_overrides(BASE, {"train.micro_batch": 2}),
                config_from_dict(_json_with("train", "micro_batch", 2))):
        assert type(cfg.train.micro_batch) is int and cfg.train.micro_batch == 2
    for cfg in (apply_overrides(BASE, ["data.eval_short_side=None"]), config_from_dict(_json_with("data", "eval_short_side", None))):
        assert cfg.data.eval_short_side is None
    assert type(apply_overrides(BASE, ["data.eval_short_side=640"]).data.eval_short_side) is int


def _is_float_type(tp) -> bool:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return float in args
    return tp is float


def _float_fields(cfg: Config):
    """(dotted name, value) of every field typed float, float | None or tuple[float, ...] / tuple[float, float]."""
    for section in dataclasses.fields(cfg):
        value = getattr(cfg, section.name)
        if not dataclasses.is_dataclass(value):
            continue
        hints = typing.get_type_hints(type(value))
        for f in dataclasses.fields(value):
            tp, item = hints[f.name], getattr(value, f.name)
            if _is_float_type(tp) and item is not None:
                yield f"{section.name}.{f.name}", (item,)
            elif typing.get_origin(tp) is tuple and float in typing.get_args(tp):
                yield f"{section.name}.{f.name}", item


def test_every_shipped_config_holds_floats_in_its_float_fields():
    # A config built in code with an int in a float field would hash otherwise than the same setting
    # written on the command line or read back from a checkpoint's JSON.
    checked = 0
    for name in list_configs():
        for profile in ("smoke", "paper"):
            cfg = load_config(name, profile)
            for key, values in _float_fields(cfg):
                assert all(type(v) is float for v in values), f"{name} ({profile}): {key} = {values!r}"
                checked += 1
            assert config_hash(config_from_dict(json.loads(json.dumps(cfg.to_dict())))) == config_hash(cfg)
    assert checked > 100  # OptimConfig alone has 5 float fields per config
    assert OptimConfig().lr == 1e-4  # the schema default itself is a float


def test_number_like_text_for_an_optional_str_field_is_kept_as_text():
    assert apply_overrides(BASE, ["data.root=2024"]).data.root == "2024"
    assert apply_overrides(BASE, ["data.root=None"]).data.root is None
