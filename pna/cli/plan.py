"""Which row fits which card: the estimated peak memory per micro-batch and the split of the
authors' batch (processes x micro-batch x accumulation steps) that fits (pna.analysis.card_fit).

    pna plan --config cityscapes/deeplabv3_r103_os16_pna --gpu-mem 24          # one row, one 24 GB GPU
    pna plan --config voc/psp_swin_b_pna --gpu-mem 16 --gpus 4
    pna plan --gpu-mem 12 24 48 80                                               # every paper row
    pna plan --gpu-mem 12 24 48 80 --markdown                                    # the README's table
    pna plan --measured          # what the GPU rehearsal measured at the authors' per-GPU batch (no estimate)

The figures come from the rehearsal's measured table (results/rehearsal/cuda.csv where a GPU has
measured it, else cpu.csv, whose CPU RSS is not GPU memory: an upper bound). Train with the split
shown: ``--set train.micro_batch=M`` (notebooks: ``micro_batch=M``).
"""
from __future__ import annotations

import argparse

HELP = "estimate which row fits which GPU memory, and the micro-batch x accumulation it would use"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="one row (default: a table of every measured paper row)")
    parser.add_argument("--gpu-mem", type=float, nargs="+", metavar="GB", help="memory per GPU, GB (estimates)")
    parser.add_argument("--measured", nargs="?", const="", metavar="CSV",
                        help="what the GPU rehearsal measured at the authors' per-GPU batch against 24 / 40 / 80 GB "
                             "cards, no estimate (default CSV: results/rehearsal/cuda.csv)")
    parser.add_argument("--gpus", type=int, default=1, help="GPUs (processes) the authors' batch is split over")
    parser.add_argument("--markdown", action="store_true", help="print the PNA rows' table as the README's Markdown")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pna.analysis.card_fit import (SOURCES, choose_split, fit_markdown, fit_table, footprints, measured_table,
                                       plan_markdown, plan_table)
    from pna.configs import load_config
    from pna.engine.batch_split import mining_chunk
    from pna.paths import REPO_ROOT

    if args.measured is not None:
        print(fit_markdown(fit_table(Path(args.measured or REPO_ROOT / "results" / "rehearsal" / "cuda.csv"))))
        return 0
    if not args.gpu_mem:
        raise ValueError("pass --gpu-mem GB [GB ...] (estimates) or --measured (the GPU rehearsal's table)")

    if args.gpus < 1:
        raise ValueError(f"--gpus must be >= 1, got {args.gpus}")
    if args.markdown and args.config is not None:
        raise ValueError("--markdown prints the table of every PNA row; drop --config")
    if args.markdown:
        table = plan_table(args.gpu_mem, args.gpus)
        print(plan_markdown(table[table.index.str.endswith("_pna")]))  # the README lists the PNA rows
        return 0
    source, peaks = measured_table()
    prints = footprints()
    print(f"measured: {SOURCES[source]}")
    if args.config is None:
        print(plan_table(args.gpu_mem, args.gpus).to_string())
        print(f"cells: micro-batch x accumulation steps per GPU of {args.gpus} GPU(s); '-': does not fit")
        return 0
    cfg = load_config(args.config, "paper")  # an unknown name: its one-line error lists the configs
    if args.config not in peaks:
        rehearse = "pna rehearse --device cuda --batch authors --update" if source == "cuda" else "pna rehearse --update"
        raise ValueError(f"{args.config}: no measured peak memory in results/rehearsal/{source}.csv; "
                         f"run `{rehearse} --rows {args.config}` first")
    if args.config not in prints:
        raise ValueError(f"{args.config}: its model has no parameter count in results/cost/all_models.csv; "
                         "run `pna cost --all-models --resume` first")
    fp = prints[args.config]
    print(f"{args.config}: {fp.state_mb / 1024:.1f} GB weights + gradients + AdamW state, "
          f"{fp.per_image_mb / 1024:.2f} GB per image")
    for mem in args.gpu_mem:
        chunk = mining_chunk(cfg)
        split = choose_split(fp, cfg.train.batch_size, args.gpus, mem, chunk)
        if split is None:
            smallest = chunk or 1  # the row mines hard pixels per chunk: smaller micro-batches are not offered
            print(f"{mem:g} GB: does not fit {smallest} image(s) per GPU (estimated {fp.peak_mb(smallest) / 1024:.1f} GB)"
                  + (f"; micro-batches are multiples of the {chunk}-image mining chunk" if chunk else ""))
        else:
            print(f"{mem:g} GB: {split.text()} (estimated peak {fp.peak_mb(split.micro_batch) / 1024:.1f} GB per GPU; "
                  f"--set train.micro_batch={split.micro_batch})")
    return 0
