"""What a notebook calls: train (or reuse) the rows of one paper table and tabulate them.

The notebooks stay thin: their ``parameters`` cell holds literals (profile, data_root, device,
rows, iters, batch_size, seed, out_dir, weights, trust_files, gpus, nodes, ...) and hands them to :func:`run_rows`, which
turns each into a config (``pna.configs``), trains it (``pna.engine.train``: a finished run of the same
config is reused, so notebooks that share a model train it once) and writes its results JSON.

Where a row trains: in the notebook's own process when one process is asked for (``gpus`` 1, the
default on a machine with at most one GPU and in the smoke profile); on ``gpus`` processes per node
(every visible GPU by default in the paper profile) through torchrun otherwise
(:mod:`pna.engine.launch`; on ``device="cpu"`` ``gpus`` counts gloo processes); or as cluster jobs
when a ``launcher`` is given (:func:`pna.tools.cluster.job_launcher`, the notebooks' ``executor``).

Example::

    >>> from pna.analysis.experiments import table_rows
    >>> table_rows("table1")[:2]
    ['fcn_r50_os32', 'fcn_r50_os8']
"""
from __future__ import annotations

import ast
import time
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from pna.configs import PAPER_DATA, PROFILES, ROWS, config_hash, load_config
from pna.engine.build import load_run, with_weights  # noqa: F401 (load_run: also this module's API)
from pna.engine.launch import launch, resolve_processes
from pna.engine.preflight import check_before_training, check_weights_argument
from pna.engine.rundir import RunDir, default_run_dir
from pna.engine.runlock import RunLocked
from pna.engine.train import RunResult, train
from pna.files import trusting
from pna.analysis.live_curves import live_curves
from pna.analysis.paper_numbers import trained_backbone

DEVICES = ("auto", "cpu", "cuda")


def table_rows(table: str) -> list[str]:
    """Row names of one paper table, in the paper's order."""
    rows = [row.name for row in ROWS.values() if row.table == table]
    if not rows:
        tables = sorted({row.table for row in ROWS.values()})
        raise ValueError(f"unknown table {table!r}; expected one of {tables}")
    return rows


def parse_list(value, name: str = "rows") -> list[str] | None:
    """What papermill users type for a list parameter, as a list of names.

    Accepts None, a list/tuple, a single name, a comma-separated string, or the text of a Python or
    JSON list (``-p rows "['a', 'b']"`` arrives as that text).

    >>> parse_list("fpn_r52_pna"), parse_list("a, b"), parse_list("['a', 'b']"), parse_list(["a"])
    (['fpn_r52_pna'], ['a', 'b'], ['a', 'b'], ['a'])
    """
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith(("[", "(")):
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise ValueError(f"{name}: cannot read {value!r} as a list; give a name, 'a,b' or ['a', 'b']") from None
        elif text.lower() in ("none", "null", ""):
            return None
        else:
            value = [part.strip() for part in text.split(",") if part.strip()]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{name}: expected a list of names, a name or 'a,b', got {value!r}")
    return list(value)


def parse_mapping(value, name: str) -> dict[str, str]:
    """A ``{name: path}`` parameter: a dict, or its text as papermill's ``-p`` hands it over.

    >>> parse_mapping("{'fpn_r52_pna': '/ckpt/model.pth'}", "authors_checkpoints")
    {'fpn_r52_pna': '/ckpt/model.pth'}
    """
    if value is None:
        return {}
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value.strip())
        except (ValueError, SyntaxError):
            raise ValueError(f"{name}: cannot read {value!r}; expected a mapping like {{'row': '/path/file'}}") from None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"{name}: expected a mapping of row names to files, got {value!r}")
    return {k: str(v) for k, v in value.items()}


def parse_rows(rows, table: str) -> list[str]:
    """The rows of ``table`` a notebook should train: ``rows`` as :func:`parse_list` reads it
    (None: every row of the table); an unknown name is an error listing the table's rows."""
    known = table_rows(table)
    chosen = parse_list(rows, "rows")
    if chosen is None:
        return known
    unknown = [r for r in chosen if r not in known]
    if unknown:
        raise ValueError(f"{table} has no row(s) {unknown}; its rows are {known}")
    return chosen


def check_choice(value, name: str, choices: Sequence[str]) -> str:
    """``value`` if it is one of ``choices``, else a one-line error naming the parameter."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")
    return value


def _config_name(table: str, row: str) -> str:
    for name, spec in ROWS.items():
        if spec.table == table and spec.name == row:
            return name
    raise ValueError(f"{table} has no row {row!r}; its rows are {table_rows(table)}")


def make_config(table: str, row: str, profile: str = "smoke", data_root: str | None = None,
                device: str = "auto", iters: int | None = None, batch_size: int | None = None,
                seed: int = 0, overrides: Sequence[str] = (), weights=None, allow_random_init: bool | None = None,
                workers: int | None = None, micro_batch: int | None = None):
    """The config of one row with the notebook parameters applied (``None`` keeps the profile's).

    ``data_root=None`` means the built-in synthetic set (smoke) and is an error for ``paper``; a
    ``data_root`` with the smoke profile trains the smoke schedule on the row's real dataset.
    ``weights`` (paper profile): a folder of ImageNet weight files under their documented names, or
    a mapping backbone -> file (:func:`pna.models.backbones.resolve_pretrained`); without them the
    paper profile refuses a randomly initialised backbone unless ``allow_random_init``.
    """
    check_choice(profile, "profile", PROFILES)
    check_choice(device, "device", DEVICES)
    name = _config_name(table, row)
    if profile == "paper" and data_root is None:
        raise ValueError(f"profile='paper' trains on the real dataset of {table}: give data_root "
                         "(the dataset folder, see data_prep/README.md)")
    changes = [f"train.seed={seed}", f"train.device={device}"]
    if data_root is not None:
        changes.append(f"data.root={str(data_root)!r}")
        if profile == "smoke":
            real = PAPER_DATA[ROWS[name].dataset]
            changes += [f"data.dataset={real['dataset']!r}", f"data.eval_split={real['eval_split']!r}",
                        f"data.eval_dataset={real.get('eval_dataset')!r}", "data.options={}"]
    if iters is not None:
        changes.append(f"train.iters={iters}")
    if batch_size is not None:
        changes.append(f"train.batch_size={batch_size}")
    if workers is not None:
        changes.append(f"train.workers={workers}")
    if micro_batch is not None:
        changes.append(f"train.micro_batch={micro_batch}")
    check_weights_argument(weights)  # in every profile: a smoke backbone takes none, a wrong path is still an error
    return with_weights(load_config(name, profile, [*changes, *overrides]), weights, allow_random_init)


def run_rows(table: str, rows=None, profile: str = "smoke",
             data_root: str | None = None, device: str = "auto", iters: int | None = None,
             batch_size: int | None = None, seed: int = 0, out_dir: str | None = None,
             overrides: Sequence[str] = (), weights=None, allow_random_init: bool | None = None,
             workers: int | None = None, authors_checkpoints: Mapping[str, str] | None = None,
             trust_files=None, gpus: int | None = None, nodes: int = 1, rdzv_endpoint: str | None = None,
             micro_batch: int | None = None, launcher=None, wait: bool = False, tensorboard: bool = False,
             live: bool | None = None) -> dict[str, RunResult]:
    """Train (or reuse) each row of ``table`` and write its results JSON into ``out_dir``
    (default: ``results/``); ``rows`` as :func:`parse_rows` reads it (None: every row).

    ``gpus`` (per node; None: every visible GPU in the paper profile, else 1), ``nodes`` and
    ``rdzv_endpoint`` say where each row trains (module docstring); ``micro_batch`` the images per
    forward pass of a process (None: the whole share, no accumulation; :mod:`pna.engine.batch_split`).
    ``launcher`` (:func:`pna.tools.cluster.job_launcher`): submit every row as a job and wait for all.
    ``authors_checkpoints`` maps rows to the authors' released files: those rows are evaluated
    with the authors' weights (:func:`evaluate_authors_row`) instead of trained. ``trust_files``
    (a list of paths, as :func:`parse_list` reads it) are weight / checkpoint files read with the
    unrestricted unpickler, which runs code stored in them (:mod:`pna.files`): only files you
    trust (the trust reaches torchrun ranks and jobs through ``PNA_TRUSTED_FILES``). Every row and
    parameter is checked before the first row trains (:mod:`pna.engine.preflight`: also a results
    JSON of another config, and a row's run folder another process is training). ``wait``: wait for
    such a row (then use its run) instead of refusing (:mod:`pna.engine.runlock`). ``tensorboard``: event
    files in each run folder (:mod:`pna.engine.watch`); ``live``: the loss and evaluation curves of
    the row training, redrawn in the cell (None: in a kernel; :mod:`pna.analysis.live_curves`)."""
    rows = parse_rows(rows, table)
    authors = parse_mapping(authors_checkpoints, "authors_checkpoints")
    unknown = sorted(set(authors) - set(table_rows(table)))
    if unknown:
        raise ValueError(f"authors_checkpoints: {table} has no row(s) {unknown}; its rows are {table_rows(table)}")
    rows += [r for r in authors if r not in rows]
    configs = {row: make_config(table, row, profile, data_root, device, iters, batch_size, seed, overrides,
                                weights, allow_random_init, workers, micro_batch)
               for row in rows if row not in authors}  # every row is checked before the first one trains
    procs = None if launcher is not None else resolve_processes(gpus, nodes, rdzv_endpoint, device, profile)
    if launcher is not None and tensorboard:
        print("note: tensorboard=True is not passed to cluster jobs; their rows train without event files", flush=True)
    for cfg in configs.values():
        check_rows_start(cfg, procs.world if procs is not None else None, out_dir, wait)
    runs, start = {}, time.perf_counter()
    with trusting(parse_list(trust_files, "trust_files")):  # before any job starts: they inherit it
        pending = {row: launcher.submit(cfg, gpus=gpus, nodes=nodes) for row, cfg in configs.items()} if launcher else {}
        for i, row in enumerate(rows, 1):
            if row in authors:
                print(f"[{i}/{len(rows)}] {table} / {row}: the authors' checkpoint {authors[row]}", flush=True)
                runs[row] = evaluate_authors_row(table, row, authors[row], data_root, device, out_dir)
                continue
            print(f"[{i}/{len(rows)}] {table} / {row} ({profile})", flush=True)
            if row in pending:
                runs[row] = pending[row].result()
            else:
                with live_curves(configs[row], live) as curves:
                    runs[row] = (train(configs[row], results_dir=out_dir, wait=wait, tensorboard=tensorboard,
                                       on_log=curves.poll) if procs.world == 1 else
                                 launch(configs[row], procs, out_dir, wait=wait, tensorboard=tensorboard,
                                        on_tick=curves.poll))
    reused = sum(run.reused for run in runs.values())
    print(f"{table}: {len(runs)} row(s) in {time.perf_counter() - start:.0f} s, {len(runs) - reused} trained, "
          f"{reused} reused", flush=True)
    return runs


def check_rows_start(cfg, world: int | None, out_dir, wait: bool) -> None:
    """What :func:`pna.engine.train.train` would refuse at the start of ``cfg``'s row, checked before
    the first row trains; ``world`` None: the processes are a job's, decided there."""
    cfg_hash = config_hash(cfg)
    run = RunDir(default_run_dir(cfg.model.name, cfg.profile, cfg_hash))
    check_before_training(cfg, cfg_hash, run, results_dir=out_dir, world=world or 1)  # with the batch split
    holder = run.live_holder()
    if holder is not None and not wait:
        raise RunLocked(run.path, holder)


def evaluate_authors_row(table: str, row: str, checkpoint: str | Path, data_root: str | None,
                         device: str = "auto", out_dir: str | None = None) -> RunResult:
    """Score the authors' released model of ``row`` on its paper evaluation split and write the
    result as ``<table>/<row>.authors.json`` (profile label ``authors``, beside ours, never mixed)."""
    from pna.engine import distributed as dist
    from pna.engine.evaluate import evaluate_authors_checkpoint
    from pna.configs import config_hash
    from pna.engine.records import provenance, write_result

    if data_root is None:
        raise ValueError(f"authors_checkpoints: evaluating {table}/{row} needs data_root (the real dataset)")
    cfg = make_config(table, row, "paper", data_root, device)
    torch_device = dist.init_from_env(device)
    start = time.perf_counter()
    metrics = evaluate_authors_checkpoint(cfg, checkpoint, torch_device)
    record = provenance(cfg, config_hash(cfg), torch_device, 1, {"eval": metrics["num_images"]}, 0,
                        time.perf_counter() - start)
    record = {**record, "profile": "authors", "config": {**record["config"], "profile": "authors"},
              "metrics": metrics, "source": str(checkpoint)}
    path = write_result(record, out_dir)
    return RunResult(None, cfg, record["config_hash"], metrics, record, path, reused=False)


def stage_table(runs: dict[str, RunResult]) -> pd.DataFrame:
    """mIoU (%) of every stage of every run: one line per row, columns P0..P4, ``final`` and what was
    trained (``trained as``: the backbone the run built and its training set)."""
    lines = []
    for row, run in runs.items():
        stages = run.metrics["stages"]
        line = {"row": row, **{s: 100 * m["mIoU"] for s, m in stages.items()}}
        line["final"] = 100 * run.miou()
        backbone = trained_backbone(run.config.model.name, run.config.model.overrides)
        line["trained as"] = (f"{backbone} on {run.config.data.dataset}" if run.run_dir is not None
                              else "the authors' released model")  # evaluate_authors_row: nothing trained
        lines.append(line)
    if not lines:  # no row trained (e.g. window_rows=[]): an empty table, not a KeyError
        return pd.DataFrame(index=pd.Index([], name="row"))
    return pd.DataFrame(lines).set_index("row")


def load_trained(run: RunResult, device: str = "cpu"):
    """The trained model of a run (eval mode) and its evaluation dataset, for figures."""
    return load_run(run.run_dir, run.config, device)


