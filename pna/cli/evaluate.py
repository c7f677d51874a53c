"""Per-stage mIoU and boundary quality (Boundary IoU, boundary F, trimap mIoU) of a trained
checkpoint, or of a model the authors released.

    pna evaluate --checkpoint runs/<run>/final.pt [--split val] [--mode whole|slide] [--root DIR]
    pna evaluate --checkpoint final.pt --root /data/VOCdevkit/VOC2012 --dataset voc
    pna evaluate --authors-checkpoint model_final.pth --config cityscapes/fpn_r52_pna --root /data/cityscapes

A checkpoint is evaluated on the dataset it was trained for. ``--root`` names where that dataset
lies; a smoke checkpoint (synthetic set) and a real dataset folder do not mix unless ``--dataset``
says which loader reads the folder (the model's classes must be that dataset's). Nothing is ever
written into a dataset folder.
"""
from __future__ import annotations

import argparse

from pna.cli.train import add_overrides, add_trust_file

HELP = "per-stage mIoU and boundary quality of a checkpoint (ours or the authors')"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", help="a final.pt or last.pt written by `pna train`")
    parser.add_argument("--authors-checkpoint", metavar="FILE",
                        help="a trained model the authors released (MMSeg or Detectron2 file); needs --config")
    parser.add_argument("--config", metavar="NAME", help="with --authors-checkpoint: the row it is evaluated as "
                        "(paper profile), e.g. cityscapes/fpn_r52_pna; with --checkpoint: the row the checkpoint "
                        "must hold (checked; its own config is used)")
    parser.add_argument("--split", help="evaluation split (default: the config's data.eval_split)")
    parser.add_argument("--mode", choices=["whole", "slide"], help="default: the config's eval.mode")
    parser.add_argument("--root", help="dataset folder (default: the config's data.root)")
    parser.add_argument("--dataset", help="the loader that reads --root (pna.data.DATASETS), when it is not "
                        "the dataset the checkpoint was trained on")
    add_overrides(parser, "--set eval.mode=slide")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--output", help="also write the metrics as JSON here")
    add_trust_file(parser)


def checked_config(cfg, root: str | None, dataset: str | None, source: str):
    """``cfg`` pointed at ``root`` / ``dataset``; a one-line error when the folder cannot hold the
    dataset the config evaluates (a smoke checkpoint and a real dataset folder)."""
    from pathlib import Path

    from pna.configs import apply_overrides
    from pna.data import DATASETS

    changes = {}
    if dataset is not None:
        if dataset not in DATASETS:
            from pna.errors import unknown_name_error
            raise unknown_name_error("dataset", dataset, DATASETS, "pna.data.DATASETS")
        changes.update({"data.eval_dataset": dataset, "data.options": {}, "data.eval_options": {}})
    evaluated = dataset or cfg.data.eval_dataset or cfg.data.dataset
    if root is not None:
        if evaluated == "synthetic" and not (Path(root) / "synthetic").is_dir():
            raise ValueError(f"{source} was trained on the built-in synthetic set, but --root {root} holds no "
                             "synthetic set (a real dataset folder?); pass --dataset NAME to evaluate it with "
                             "that dataset's loader, or leave --root out")
        changes["data.root"] = str(root)
    return apply_overrides(cfg, changes)


def checkpoint_config(checkpoint: dict, source, expected: str | None, sets: list[str]):
    """The config a ``--checkpoint`` was trained with, ``--set`` applied; one-line errors when it holds
    another model than ``--config`` names, or ``--set`` tries to change the model it holds."""
    from pna.configs import apply_overrides, config_from_dict, load_config

    try:
        held = config_from_dict(checkpoint["config"])
    except (ValueError, TypeError, AttributeError) as error:
        raise ValueError(f"{source}: the config stored in it cannot be read ({error})") from None
    if expected is not None:
        wanted = load_config(expected, held.profile)
        if (wanted.model.name, wanted.model.overrides) != (held.model.name, held.model.overrides):
            raise ValueError(f"{source} holds model {held.model.name} (trained as {held.name}, {held.profile} "
                             f"profile), not {wanted.model.name} of --config {expected}: give the checkpoint of "
                             f"{expected}, or leave --config out")
    changed = [s for s in sets if s.split("=", 1)[0].strip().startswith("model.")]
    if changed:
        raise ValueError(f"--set {changed[0]}: the model is rebuilt from what {source} holds "
                         f"({held.model.name}); model settings cannot be changed for its evaluation")
    return apply_overrides(held, sets)


def stage_boundary_text(stage: dict) -> str:
    """The boundary metrics of one stage as printed after its mIoU ("" when it has none).

    >>> stage_boundary_text({"boundary_iou": {"mean": 0.5}, "boundary_f": {"mean": 0.25}, "trimap_miou": {"1": 0.4}})
    '  Boundary IoU 50.00  boundary F 25.00  trimap mIoU 1px 40.0'
    """
    if "boundary_iou" not in stage:
        return ""
    trimap = " ".join(f"{w}px {100 * v:.1f}" for w, v in stage["trimap_miou"].items())
    return (f"  Boundary IoU {100 * stage['boundary_iou']['mean']:.2f}  boundary F {100 * stage['boundary_f']['mean']:.2f}"
            f"  trimap mIoU {trimap}")


def run(args: argparse.Namespace) -> int:
    from pna.files import trusting

    with trusting(args.trust_file):
        return _evaluate(args)


def _evaluate(args: argparse.Namespace) -> int:
    from pna.configs import apply_overrides, load_config
    from pna.data import info
    from pna.engine import distributed as dist
    from pna.engine.build import build_eval_set, model_from_checkpoint
    from pna.engine.checkpoint import atomic_write_json, load_checkpoint
    from pna.engine.evaluate import evaluate_authors_checkpoint, evaluate_with_config

    if (args.checkpoint is None) == (args.authors_checkpoint is None):
        raise ValueError("pass one of --checkpoint or --authors-checkpoint")
    if args.authors_checkpoint and not args.config:
        raise ValueError("--authors-checkpoint needs --config NAME (one of pna.configs.list_configs())")
    checkpoint = None
    if args.authors_checkpoint:
        cfg, source = load_config(args.config, "paper", args.set), args.authors_checkpoint
    else:
        checkpoint = load_checkpoint(args.checkpoint)
        cfg, source = checkpoint_config(checkpoint, args.checkpoint, args.config, args.set), args.checkpoint
    cfg = checked_config(cfg, args.root, args.dataset, source)
    extra = {"data.eval_split": args.split, "eval.mode": args.mode}
    cfg = apply_overrides(cfg, {k: v for k, v in extra.items() if v is not None})
    device = dist.init_from_env(args.device)
    orderly = False
    try:
        if checkpoint is None:
            metrics = evaluate_authors_checkpoint(cfg, args.authors_checkpoint, device, progress=True)
        else:
            classes = info(cfg.data.eval_dataset or cfg.data.dataset).num_classes
            trained = info(cfg.data.dataset).num_classes
            if args.dataset and classes != trained:
                raise ValueError(f"{source} predicts {trained} classes; dataset {args.dataset!r} has {classes}")
            dataset = build_eval_set(cfg)
            model = model_from_checkpoint(checkpoint, source).to(device)
            metrics = evaluate_with_config(model, dataset, cfg, device, progress=True)
        if dist.is_main():
            print(f"{cfg.data.eval_dataset or cfg.data.dataset} {cfg.data.eval_split} ({metrics['num_images']} "
                  f"images, {cfg.eval.mode}):")
            for name, stage in metrics["stages"].items():
                print(f"  {name}: mIoU {100 * stage['mIoU']:.2f}{stage_boundary_text(stage)}")
            if args.output:
                atomic_write_json({"checkpoint": str(source), "split": cfg.data.eval_split, "mode": cfg.eval.mode,
                                   **metrics}, args.output)
        orderly = True
    finally:
        dist.cleanup(orderly)
    return 0
