"""Changing a config by dotted name with type checking (``--set a.b=value``, notebook overrides)
and rebuilding one from its JSON form, every value checked against the field's type.

Example::

    >>> from pna.configs.schema import Config
    >>> cfg = apply_overrides(Config(), ["optim.lr=2e-4", "model.overrides.window_size=5", "data.dataset=voc"])
    >>> cfg.optim.lr, cfg.model.overrides["window_size"], cfg.data.dataset
    (0.0002, 5, 'voc')
    >>> config_from_dict(cfg.to_dict()) == cfg
    True
"""
from __future__ import annotations

import ast
import copy
import dataclasses
import types
import typing
from typing import Any

from pna.configs.schema import Config, validate

# Bounds on an override's text before Python's literal parser sees it: its parser recurses once per
# bracket or sign, so 20,000 minus signs ran out of memory (MemoryError, no key named). A path is at
# most 4096 bytes on Linux (PATH_MAX); no setting needs more, nor more than 32 levels of nesting.
MAX_VALUE_CHARS = 4096
MAX_NESTING = 32
_OPENERS, _CLOSERS, _SIGNS = "([{", ")]}", "+-~"


def _shown(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters: an error line stays one short line."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _nesting(text: str) -> int:
    """The deepest run of open brackets and consecutive signs in ``text``, as the parser recurses."""
    depth = deepest = signs = 0
    for char in text:
        if char in _OPENERS:
            depth += 1
        elif char in _CLOSERS:
            depth -= 1
        signs = signs + 1 if char in _SIGNS else (signs if char.isspace() else 0)
        deepest = max(deepest, depth + signs)
    return deepest


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
        raise ValueError(f"{key}: expected {_type_name(tp)}, got {_shown(value)}")
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:  # tuple[int, ...]: any length, one item type
            if not isinstance(value, (list, tuple)) or not value:
                raise ValueError(f"{key}: expected a non-empty tuple ({_type_name(tp)}), got {_shown(value)}")
            return tuple(_check_type(f"{key}[{i}]", v, args[0]) for i, v in enumerate(value))
        if not isinstance(value, (list, tuple)) or len(value) != len(args):
            raise ValueError(f"{key}: expected a tuple of {len(args)} ({_type_name(tp)}), got {_shown(value)}")
        return tuple(_check_type(f"{key}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{key}: expected bool, got {_shown(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key}: expected int, got {_shown(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{key}: expected float, got {_shown(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{key}: expected str, got {_shown(value)}")
        return value
    if tp is dict or origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{key}: expected dict, got {_shown(value)}")
        return copy.deepcopy(value)
    raise ValueError(f"{key}: unsupported field type {_type_name(tp)}")


def _parse_text(key: str, text: str, tp: Any) -> Any:
    """Turn command-line text into a value of `tp`: Python literals, bare words for str fields."""
    value = parse_literal(text, key)
    optional_str = typing.get_origin(tp) in (typing.Union, types.UnionType) and str in typing.get_args(tp)
    if (tp is str or optional_str and value is not None) and not isinstance(value, str):
        value = text  # a str field keeps its text even when it looks like a number (data.root=2024)
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
    entries. An unknown key, a value of the wrong type or one that makes no sense
    (:func:`pna.configs.schema.validate`) raises ValueError.
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
    return validate(cfg)


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
            target[name] = parse_literal(value, key) if is_text else value
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


def parse_literal(text: str, name: str = "value") -> Any:
    """``text`` as a Python literal where it is one (``"3"`` -> 3, ``"[1, 2]"`` -> [1, 2]), else the text
    itself (``"cpu"``): how ``--set`` / ``-p`` values are read when no type says otherwise. Text longer
    than :data:`MAX_VALUE_CHARS` or nested deeper than :data:`MAX_NESTING` is a one-line error naming
    ``name`` (the key or parameter), before the parser sees it.

    >>> parse_literal("0.5"), parse_literal("['a']"), parse_literal("slurm")
    (0.5, ['a'], 'slurm')
    >>> parse_literal("-" * 20000 + "1", "optim.lr")
    Traceback (most recent call last):
    ...
    ValueError: optim.lr: a value of 20001 characters; expected at most 4096
    """
    if len(text) > MAX_VALUE_CHARS:
        raise ValueError(f"{name}: a value of {len(text)} characters; expected at most {MAX_VALUE_CHARS}")
    if _nesting(text) > MAX_NESTING:
        raise ValueError(f"{name}: a value nested {_nesting(text)} levels deep (brackets and signs); expected at "
                         f"most {MAX_NESTING}: {_shown(text, 40)}")
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError):
        return text
    except (MemoryError, RecursionError):  # within the bounds above this should not happen; still one line
        raise ValueError(f"{name}: value too complex to read: {_shown(text, 40)}") from None
