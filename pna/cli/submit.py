"""Submit rows, or a whole notebook, as cluster jobs (SLURM through submitit, or its local executor).

    pna submit --rows voc/fcn_r50_os32_pna voc/fcn_r50_os32 --profile paper --set data.root=/data/VOC2012 \\
               --weights /weights --executor slurm --gpus 4 --time 600 --partition gpu
    pna submit --notebook notebooks/03_cityscapes.ipynb -p profile paper -p data_root /data/cityscapes \\
               --executor slurm --gpus 4 --time 1440
    pna submit --rows voc/fcn_r50_os32_pna --executor local --gpus 1 --wait   # no SLURM: this machine

The job ids and log files are printed. A row finished before (same config hash in runs/) is loaded,
not submitted. A preempted or timed-out job saves its state and is requeued; it resumes
(pna.tools.cluster). ``--gpus`` is per node; on a CPU device (``--set train.device=cpu``) it counts
gloo processes.
"""
from __future__ import annotations

import argparse

from pna.cli.train import add_overrides

HELP = "submit rows or a notebook as SLURM (or local) jobs through submitit"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--rows", nargs="+", metavar="CONFIG", help='config names, e.g. "voc/fcn_r50_os32_pna"')
    what.add_argument("--notebook", help="a notebook to run with papermill in one job")
    parser.add_argument("--profile", default="paper", choices=["smoke", "paper"], help="(--rows) default: paper")
    add_overrides(parser, "--set data.root=/data/VOC2012")
    parser.add_argument("--weights", metavar="PATH", help="(--rows) ImageNet weights: a file or a folder")
    parser.add_argument("--allow-random-init", action="store_true", help="(--rows) train without pretrained weights")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="(--notebook) a notebook parameter (a Python literal), repeatable")
    parser.add_argument("--executor", default="slurm", choices=["slurm", "local"])
    parser.add_argument("--gpus", type=int, help="GPUs per node (slurm: required)")
    parser.add_argument("--nodes", type=int, default=1, help="(--rows) nodes per job")
    parser.add_argument("--time", type=int, default=600, help="minutes per job (a requeued job resumes)")
    parser.add_argument("--partition", help="SLURM partition")
    parser.add_argument("--folder", help="submitit's folder for job files and logs (default: results/jobs)")
    parser.add_argument("--results-dir", help="(--rows) where results JSONs go (default: results/)")
    parser.add_argument("--wait", action="store_true", help="wait for the jobs and print their mIoU")


def run(args: argparse.Namespace) -> int:
    from pna.configs import load_config
    from pna.engine.build import with_weights
    from pna.tools.cluster import submit_notebook, submit_rows
    from pna.configs.overrides import parse_literal

    if args.notebook:
        job = submit_notebook(args.notebook, {k: parse_literal(v) for k, v in args.parameter}, args.executor, args.gpus,
                              args.time, args.partition, args.folder)
        if args.wait:
            print(f"executed: {job.result()}")
        return 0
    from pna.engine.preflight import check_weights_argument

    allow = True if args.allow_random_init else None
    check_weights_argument(args.weights)
    configs = [with_weights(load_config(name, args.profile, args.set), args.weights, allow) for name in args.rows]
    done = submit_rows(configs, args.executor, args.gpus, args.nodes, args.time, args.partition, args.folder,
                       args.results_dir, wait=args.wait)
    if args.wait:
        for name, result in done.items():
            stages = "  ".join(f"{k} {100 * v['mIoU']:.2f}" for k, v in result.metrics["stages"].items())
            print(f"{name}: mIoU (%) {stages}; results {result.result_path}")
    return 0
