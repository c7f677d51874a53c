"""Train one paper-table row (or load its finished run) and write its results JSON.

    pna train --config voc/fcn_r50_os32_pna [--profile smoke|paper] [--set KEY=VALUE]... [--out DIR]
    torchrun --nproc_per_node=4 -m pna train --config ... --profile paper --weights /weights
    pna train --config ... --weights /weights --trust-file /weights/old_format.pth   # runs its code

Every ``--set`` counts (repeat it, or give several pairs after one); an unknown key is an error
naming the valid keys. Finished runs are cached by config hash under ``runs/``.

SIGTERM or SIGUSR1 (a cluster preempting the job, ``kill``) ends the step in progress, saves the
resume state and exits with status 75 (EX_TEMPFAIL: run the same command again to continue); Ctrl-C
(SIGINT) does the same and exits with 130. A non-finite loss or gradient is a one-line error
(status 1) and writes no result. What the config and the files decide (``train.iters=0``, a results
JSON of another config, missing weights, ``--resume`` with nothing to resume) is refused before
anything is built. One process trains a run folder at a time: a second training of it refuses,
naming the one that holds it (pid@host, since when, its command), or waits with ``--wait``.
``--tensorboard`` writes TensorBoard event files into the run folder (``tensorboard --logdir runs``);
``pna runs`` lists the runs.
"""
from __future__ import annotations

import argparse
import sys

HELP = "train one table row (single process or under torchrun)"


def add_overrides(parser: argparse.ArgumentParser, example: str) -> None:
    """``--set KEY=VALUE [KEY=VALUE ...]``, repeatable: every pair of every ``--set`` is kept."""
    parser.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help=f"config override, repeatable; e.g. {example}")


def add_trust_file(parser: argparse.ArgumentParser) -> None:
    """``--trust-file PATH``, repeatable: files read with the unrestricted unpickler (:mod:`pna.files`)."""
    parser.add_argument("--trust-file", action="append", default=[], metavar="PATH",
                        help="a weights or checkpoint file you trust to be read with the unrestricted unpickler, "
                             "which runs code stored in it (needed only for a file refused for holding more than "
                             "weights); repeatable")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help='a row, e.g. "voc/fcn_r50_os32_pna" (pna.configs.list_configs())')
    parser.add_argument("--profile", default="smoke", choices=["smoke", "paper"])
    add_overrides(parser, "--set optim.lr=2e-4 --set train.iters=100")
    parser.add_argument("--out", help="run directory (default: runs/<model>-<profile>-<hash>)")
    parser.add_argument("--results-dir", help="where the results JSON goes (default: results/)")
    parser.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run and its results JSON")
    parser.add_argument("--no-reuse", action="store_true", help="do not load a finished run of the same config")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--weights", metavar="PATH",
                        help="ImageNet weights of the backbone: a file, or a folder holding them under their "
                             "documented names (README, 'Pretrained weights')")
    parser.add_argument("--allow-random-init", action="store_true",
                        help="paper profile: train a backbone without pretrained weights instead of refusing")
    parser.add_argument("--wait", action="store_true",
                        help="if another process trains this run folder, wait for it (then use its finished run, "
                             "or resume it) instead of refusing")
    parser.add_argument("--stop-after", type=int, metavar="N",
                        help="train at most N iterations in this call, then save the resume state and exit "
                             "(continue later with the same command)")
    parser.add_argument("--tensorboard", action="store_true",
                        help="also log to TensorBoard in the run folder (losses, lr, gradient norm, images/s, memory, "
                             "per-stage mIoU and Boundary IoU, two validation images' predictions); needs the "
                             "tensorboard package (pip install 'pna[tensorboard]'), else a note and no event files")
    add_trust_file(parser)


def run(args: argparse.Namespace) -> int:
    from pna.configs import load_config
    from pna.engine import distributed as dist
    from pna.engine.build import with_weights
    from pna.engine.interrupts import TrainingInterrupted, exit_status
    from pna.engine.preflight import check_weights_argument
    from pna.engine.train import train
    from pna.files import trusting

    cfg = load_config(args.config, args.profile, args.set)
    check_weights_argument(args.weights)  # in every profile: a smoke backbone takes none, a typo is still an error
    cfg = with_weights(cfg, args.weights, True if args.allow_random_init else None)
    if args.weights is not None and "pretrained" not in {k for k, v in cfg.model.overrides.items() if v is not None}:
        print(f"pna train: note: --weights {args.weights} not used: the {args.profile} profile's backbone of "
              f"{args.config} is never pretrained", file=sys.stderr, flush=True)
    orderly = False  # every rank reached the end (finished, or stopped together by a signal)
    try:
        with trusting(args.trust_file):
            result = train(cfg, args.out, resume=args.resume, overwrite=args.overwrite, reuse=not args.no_reuse,
                           results_dir=args.results_dir, progress=not args.no_progress, stop_after=args.stop_after,
                           wait=args.wait, tensorboard=args.tensorboard)
        if result.finished and dist.is_main():
            stages = "  ".join(f"{k} {100 * v['mIoU']:.2f}" for k, v in result.metrics["stages"].items())
            print(f"mIoU (%): {stages}")
            if result.result_path:
                print(f"results: {result.result_path}")
        orderly = True
    except TrainingInterrupted as stopped:
        orderly = True
        if dist.is_main():
            print(f"pna train: {stopped}", file=sys.stderr, flush=True)
        return exit_status(stopped.signal_name)
    finally:
        dist.cleanup(orderly)
    return 0
