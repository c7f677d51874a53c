"""One run in detail (``pna runs show RUN``): its status, how its config differs from the row's
default config, its batch split and its provenance, its files.

Example::

    >>> config_changes({"train": {"iters": 120, "seed": 0}}, {"train": {"iters": 4, "seed": 0}})
    ['train.iters: 120 -> 4']
"""
from __future__ import annotations

import json

from pna.runs.index import RunInfo, human_size

PROVENANCE = ("git_commit", "git_dirty", "torch", "python", "device", "device_name", "cpu_threads", "world_size",
              "effective_batch", "dataset_sizes", "iterations", "wall_time_s", "seed")


def _flat(data: dict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and value and prefix.count(".") < 2:
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(default: dict, ours: dict) -> list[str]:
    """``key: default -> ours`` for every config field that differs (tuples and JSON lists compare equal)."""
    a, b = _flat(default), _flat(ours)
    same = lambda x, y: json.dumps(x, sort_keys=True, default=list) == json.dumps(y, sort_keys=True, default=list)  # noqa: E731
    return [f"{key}: {a.get(key, '(absent)')!r} -> {b.get(key, '(absent)')!r}".replace("'(absent)'", "(absent)")
            for key in sorted(set(a) | set(b)) if not same(a.get(key), b.get(key))]


def default_config_changes(config: dict) -> list[str]:
    """How ``config`` (a run's) differs from ``load_config(its name, its profile)``."""
    from pna.configs import load_config

    try:
        default = load_config(config["name"], config["profile"]).to_dict()
    except (KeyError, ValueError) as error:
        return [f"(the row's default config cannot be built here: {error})"]
    return config_changes(default, config)


def batch_split_text(info: RunInfo, record: dict | None) -> list[str]:
    """The batch split the finished run recorded, else the one a single process would use."""
    split = (record or {}).get("batch_split")
    note = ""
    if split is None:
        from pna.configs.overrides import config_from_dict
        from pna.engine.batch_split import describe_split, split_for

        try:
            split = describe_split(cfg := config_from_dict(info.config), split_for(cfg, 1))
        except (KeyError, ValueError, TypeError) as error:
            return [f"(cannot be computed: {error})"]
        note = " (on 1 process; a run records its own split when it finishes)"
    return [f"{split['text']}{note}", *[f"differs from the authors': {d}" for d in split.get("differences", [])]]


def describe_run(info: RunInfo) -> str:
    """The text of ``pna runs show``."""
    from pna.engine.rundir import RunDir
    from pna.paths import read_json

    run = RunDir(info.path)
    record = read_json(run.done, "finished run's record") if info.status == "finished" else None
    c = info.config
    lines = [f"run: {info.path}", f"status: {info.detail}",
             f"row: {c.get('name')} (table {c.get('table')}, row {c.get('row')}), profile {c.get('profile')}, "
             f"config hash {info.config_hash}"]
    if info.miou:
        lines.append("mIoU %: " + "  ".join(f"{k} {v:.2f}" for k, v in info.miou.items()))
    changes = default_config_changes(c) if c else ["(no config.json)"]
    lines += ["", f"config against the row's default ({c.get('name')}, {c.get('profile')}):",
              *(f"  {x}" for x in changes or ["(the default config)"])]
    if c:
        lines += ["", "batch split:", *(f"  {x}" for x in batch_split_text(info, record))]
    if record is not None:
        lines += ["", "provenance (done.json):", *(f"  {k}: {record[k]}" for k in PROVENANCE if k in record)]
        from pna.engine.records import result_path

        path = result_path(c["table"], c["row"], c["profile"])
        held = read_json(path, "results JSON").get("config_hash") if path.is_file() else None
        state = "absent" if not path.is_file() else "this run's" if held == info.config_hash else "another config's"
        lines.append(f"  results JSON: {path} ({state})")
    lines += ["", "files:"]
    lines += [f"  {p.name}{'/' if p.is_dir() else ''}  {human_size(p.stat().st_size) if p.is_file() else ''}".rstrip()
              for p in sorted(info.path.iterdir())]
    return "\n".join(lines)
