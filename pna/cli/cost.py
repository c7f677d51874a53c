"""Params, GFLOPs (fvcore) and FPS: of one registry model, of a paper table's rows beside the
paper's figures, or of every registered model.

    pna cost fcn_r50_os32_pna --size 512 512 [--device cuda] [--set window_size=7] [--json]
    pna cost --table table1 [--out results/cost/table1.csv] [--overwrite]
    pna cost --all-models [--out results/cost/all_models.csv] [--resume | --overwrite]

Conventions: params include the auxiliary head (mmseg's); GFLOPs count one multiply-add as one
FLOP on the eval-mode model, the neighbourhood-attention products included.
"""
from __future__ import annotations

import argparse

HELP = "params, GFLOPs and FPS of a model, a table's rows or every model"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", help="a registry name (pna.models.list_models())")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--table", help="every row of a paper table with a printed cost, e.g. table1")
    what.add_argument("--all-models", action="store_true", help="params and GFLOPs of every registered model")
    parser.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--num-classes", type=int, help="default: 21 (one model), the table's dataset (--table)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--fps-iters", type=int, default=10, help="timed forward passes (0: no FPS)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="model override, repeatable, e.g. --set window_size=7 --set backbone=resnet18c")
    parser.add_argument("--json", action="store_true", help="one model: print the result as JSON")
    parser.add_argument("--out", help="CSV to write (--table, --all-models); default under results/cost/")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--overwrite", action="store_true", help="replace an existing CSV")
    mode.add_argument("--resume", action="store_true", help="--all-models: keep the models already in the CSV")


def _override(text: str) -> tuple[str, object]:
    from pna.configs.overrides import parse_literal

    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ValueError(f"--set {text!r}: expected KEY=VALUE, e.g. window_size=7")
    return key, parse_literal(value)


def _out(args: argparse.Namespace, name: str):
    from pathlib import Path

    from pna.paths import results_dir

    out = Path(args.out) if args.out else results_dir() / "cost" / f"{name}.csv"
    if args.resume and not args.all_models:
        raise ValueError(f"--resume completes an --all-models CSV; {out} is measured whole (pass --overwrite to replace it)")
    if out.exists() and not (args.overwrite or args.resume):
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it" + (" or --resume to complete it"
                              if args.all_models else ""))
    return out


def run(args: argparse.Namespace) -> int:
    import json

    from pna.analysis.cost import profile_all_models, profile_model, profile_table
    from pna.engine.checkpoint import atomic_write_text
    from pna.models import list_models

    if args.all_models:
        out = _out(args, "all_models")
        rows = profile_all_models([args.model] if args.model else list_models(), out, tuple(args.size),
                                  args.device, resume=args.resume)
        print(f"wrote {out} ({len(rows)} models)")
        return 0
    if args.table:
        out = _out(args, args.table)
        frame = profile_table(args.table, None, tuple(args.size), args.device, args.fps_iters, args.num_classes)
        atomic_write_text(frame.to_csv(index=False), out)
        print(f"wrote {out}")
        return 0
    if not args.model:
        raise ValueError("name a model, or pass --table TABLE or --all-models")
    row = profile_model(args.model, args.size, args.num_classes or 21, args.device, args.fps_iters, args.warmup,
                        **dict(_override(s) for s in args.set))
    if args.json:
        print(json.dumps(row, indent=2))
        return 0
    fps = "n/a" if row["fps"] is None else f"{row['fps']:.2f}"
    print(f"{row['model']} @ {row['size'][0]}x{row['size'][1]}, {row['num_classes']} classes, {row['device']}")
    print(f"  params {row['params_m']:.2f} M   GFLOPs {row['gflops']:.2f}   FPS {fps}")
    print(f"  not counted by fvcore: {row['skipped_ops']}")
    return 0
