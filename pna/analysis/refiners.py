"""PNA beside the refiners it is compared with, on the same coarse heads and the same metrics.

For each coarse head (:data:`HEADS`: FCN-OS-32 on VOC, DeepLabV3 and semantic FPN on Cityscapes)
the methods of :data:`METHODS` are scored on one evaluation pass over the head's test split (smoke:
its first :data:`SMOKE_TEST_IMAGES` images): the head's own prediction P0; P0 + DenseCRF
(:mod:`pna.refiners.densecrf`, DeepLab v2's parameters); P0 + SegFix (one SegFix network per
dataset, :mod:`pna.models.segfix`, moving boundary pixels of P0 to their offset); PointRend on the
same backbone; PNA's P4; and P4 + SegFix (are the two complementary?). Each gets mIoU, Boundary IoU, trimap mIoU and the boundary F-score
(:mod:`pna.engine.boundary`), parameters, GFLOPs (fvcore, the eval-mode forward at the test
image's size; DenseCRF's mean field and SegFix's label shift are not convolutions and are not
counted) and FPS (batch 1 on the evaluation device, the post-processing included, the first
image left out as warm-up).

Every model comes from a training run (``runs/`` cached by config hash): the head, PointRend and
PNA rows are the paper tables' rows, trained here when no earlier notebook did; SegFix trains from
:mod:`pna.configs.refiners`. The smoke profile stands the Cityscapes heads in by their smoke
runs: R-52 for R-103 (the same half-width ResNet-10 at smoke scale, trained by notebook 03),
DeepGlobe's FPN R-52 for Cityscapes' FPN R-103 baseline (trained by notebook 04) and the VOC head's
FPN + PointRend for Cityscapes' (one run serves both): their smoke configs differ only in the name. :mod:`pna.analysis.refiners_report` writes the table,
the figures and the claims.

Example::

    >>> HEADS["cityscapes_deeplabv3"].configs("paper")["pna"]
    'cityscapes/deeplabv3_r103_os16_pna'
    >>> HEADS["cityscapes_deeplabv3"].configs("smoke")["coarse"]
    'cityscapes/deeplabv3_r52_os16'
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Mapping, Sequence


from pna.analysis.refiner_heads import HEADS, CoarseHead
from pna.analysis.refiners_eval import METHODS, evaluate_head
from pna.analysis.refiners_report import check_record_free, write_record
from pna.configs import ROWS, config_hash, load_config
from pna.configs.refiners import REFINER_ROWS, SMOKE_TEST_IMAGES
from pna.engine.build import with_weights
from pna.engine.train import RunResult

__all__ = ["HEADS", "METHODS", "CoarseHead", "compare_refiners", "parse_heads", "refiner_config", "train_inputs"]


def parse_heads(heads) -> list[str]:
    """The heads a notebook scores: None (all), a list, one key or ``"a,b"``; unknown keys are an error."""
    from pna.analysis.experiments import parse_list

    chosen = parse_list(heads, "rows") or list(HEADS)
    unknown = [h for h in chosen if h not in HEADS]
    if unknown:
        raise ValueError(f"rows: unknown coarse head(s) {unknown}; the refiners table has {list(HEADS)}")
    return chosen


def _roots(data_root, datasets: set[str]) -> dict[str, str | None]:
    """The folder of each dataset from ``data_root``: None (the synthetic set), one folder (heads of
    one dataset), or a mapping {dataset: folder} (its text too)."""
    if isinstance(data_root, str) and data_root.strip().startswith("{"):
        from pna.analysis.experiments import parse_mapping

        data_root = parse_mapping(data_root, "data_root")
    if isinstance(data_root, Mapping):
        missing = sorted(datasets - set(data_root))
        if missing:
            raise ValueError(f"data_root: no folder for dataset(s) {missing}; it names {sorted(data_root)}")
        return {d: data_root[d] for d in datasets}
    if data_root is not None and len(datasets) > 1:
        raise ValueError(f"data_root: these heads need the datasets {sorted(datasets)}; give one folder each, "
                         f"e.g. {{'voc': '/data/VOCdevkit/VOC2012', 'cityscapes': '/data/cityscapes'}}")
    return {d: data_root for d in datasets}


def refiner_config(name: str, profile: str, data_root=None, device: str = "auto", iters: int | None = None,
                   batch_size: int | None = None, seed: int = 0, weights=None, allow_random_init: bool | None = None,
                   workers: int | None = None, micro_batch: int | None = None):
    """A refiner's config (:data:`pna.configs.refiners.REFINER_ROWS`) with the notebook parameters
    applied as :func:`pna.analysis.experiments.make_config` applies them to a table's rows."""
    from pna.configs import PAPER_DATA

    row = REFINER_ROWS[name]
    if profile == "paper" and data_root is None:
        raise ValueError(f"profile='paper' trains {name} on the real dataset: give data_root")
    changes = [f"train.seed={seed}", f"train.device={device}"]
    if data_root is not None:
        changes.append(f"data.root={str(data_root)!r}")
        if profile == "smoke":  # the smoke schedule on the real dataset
            real = PAPER_DATA[row.dataset]
            changes += [f"data.dataset={real['dataset']!r}", f"data.eval_split={real['eval_split']!r}",
                        f"data.eval_dataset={real.get('eval_dataset')!r}", "data.options={}"]
    optional = {"train.iters": iters, "train.batch_size": batch_size, "train.workers": workers,
                "train.micro_batch": micro_batch}
    changes += [f"{key}={value}" for key, value in optional.items() if value is not None]
    cfg = with_weights(load_config(name, profile, changes), weights, allow_random_init)
    if profile == "paper" and not cfg.model.allow_random_init and "pretrained" not in cfg.model.overrides:
        raise ValueError(f"{name}: SegFix starts from ImageNet weights of HRNet-W48: give `weights` (a folder holding "
                         "hrnetv2_w48_imagenet_pretrained.pth), or allow_random_init=True")
    return cfg


def train_inputs(heads: Sequence[str], profile: str = "smoke", data_root=None, device: str = "auto",
                 out_dir: str | None = None, gpus: int | None = None, nodes: int = 1, rdzv_endpoint: str | None = None,
                 launcher=None, overwrite: bool = False, **options) -> dict[str, dict[str, RunResult]]:
    """Train (or reuse) every model the ``heads`` need: {head: {role: RunResult}}. The table rows
    go through :func:`pna.analysis.experiments.run_rows` (their results JSONs land in their tables),
    SegFix per dataset through the same trainer; ``options``: iters, batch_size, seed, weights,
    allow_random_init, workers, micro_batch, trust_files, tensorboard, wait (a run another process is
    training: wait for it and reuse it instead of stopping). Every dataset folder, SegFix config and
    process count is checked before anything trains, and so is each head's record in ``out_dir``: one
    scoring other runs (other config hashes) stops here unless ``overwrite`` (as it would after the
    training, in :func:`compare_refiners`)."""
    from pna.analysis.experiments import make_config, run_rows
    from pna.engine.launch import launch, resolve_processes
    from pna.files import trusting

    chosen = [HEADS[h] for h in parse_heads(heads)]
    needed = {name for head in chosen for name in head.configs(profile).values()}
    roots = _roots(data_root, {name.split("/")[0] for name in needed})
    by_table: dict[tuple[str, str], list[str]] = {}  # a table's rows share one dataset
    for name in sorted(needed - set(REFINER_ROWS)):
        by_table.setdefault((ROWS[name].table, ROWS[name].dataset), []).append(ROWS[name].name)
    trust = options.pop("trust_files", None)
    tensorboard = bool(options.pop("tensorboard", False))
    wait = bool(options.pop("wait", False))
    refiners = {name: refiner_config(name, profile, roots[REFINER_ROWS[name].dataset], device, **options)
                for name in sorted(needed & set(REFINER_ROWS))}
    procs = None if launcher is not None else resolve_processes(gpus, nodes, rdzv_endpoint, device, profile)
    hashes = {name: config_hash(cfg) for name, cfg in refiners.items()}
    row_options = {k: v for k, v in options.items() if k != "overrides"}
    for (table, dataset), rows in by_table.items():
        hashes.update({f"{dataset}/{row}": config_hash(make_config(table, row, profile, roots[dataset], device,
                                                                   **row_options)) for row in rows})
    for head in chosen:
        check_record_free(head.key, profile, {role: hashes[name] for role, name in head.configs(profile).items()},
                          out_dir, overwrite)
    runs: dict[str, RunResult] = {}
    for (table, dataset), rows in by_table.items():  # every row of a table in one call, checked before training
        done = run_rows(table, rows, profile, roots[dataset], device, out_dir=out_dir, gpus=gpus,
                        nodes=nodes, rdzv_endpoint=rdzv_endpoint, launcher=launcher, trust_files=trust,
                        tensorboard=tensorboard, wait=wait, **options)
        runs.update({f"{dataset}/{row}": done[row] for row in rows})
    with trusting(trust):
        for name, cfg in refiners.items():
            print(f"refiners / {name} ({profile})", flush=True)
            if launcher is not None:
                runs[name] = launcher.submit(cfg, gpus=gpus, nodes=nodes).result()
            else:
                runs[name] = (launch(cfg, procs, out_dir, wait=wait, tensorboard=tensorboard) if procs.world > 1
                              else _train(cfg, out_dir, tensorboard, wait))
    return {head.key: {role: runs[name] for role, name in head.configs(profile).items()} for head in chosen}


def _train(cfg, out_dir, tensorboard: bool, wait: bool) -> RunResult:
    from pna.engine.train import train

    return train(cfg, results_dir=out_dir, tensorboard=tensorboard, wait=wait)


def compare_refiners(inputs: Mapping[str, Mapping[str, RunResult]], profile: str = "smoke", device: str = "auto",
                     out_dir: str | Path | None = None, max_images: int | None = None, crf="deeplab_v2",
                     overwrite: bool = False) -> dict[str, dict]:
    """Score every method on each head of ``inputs`` (:func:`train_inputs`) and write
    ``refiners/<head>.<profile>.json`` under ``out_dir`` (default results/); returns the records.
    ``max_images`` None: the profile's (the whole split; smoke: :data:`SMOKE_TEST_IMAGES`)."""
    from pna.engine.distributed import init_from_env

    from pna.refiners import crf_params

    crf = crf_params(crf)  # a bad name fails before any image is scored
    if max_images is None and profile == "smoke":
        max_images = SMOKE_TEST_IMAGES
    for key, runs in inputs.items():  # before any image is scored
        check_record_free(key, profile, {role: run.config_hash for role, run in runs.items()}, out_dir, overwrite)
    torch_device = init_from_env(device)
    records, costs = {}, {}  # costs: params and FLOPs by (run, image size), shared by the heads
    for key, runs in inputs.items():
        start = time.perf_counter()
        record = evaluate_head(HEADS[key], runs, profile, torch_device, max_images, crf, costs)
        record["seconds"] = round(time.perf_counter() - start, 1)
        write_record(record, out_dir, overwrite)
        records[key] = record
        print(f"{key}: {record['num_images']} images scored in {record['seconds']} s", flush=True)
    return records
