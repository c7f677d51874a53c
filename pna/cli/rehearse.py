"""Rehearse the paper profile on this machine: every paper row end to end at the real sizes on a
tiny dataset in the official formats (real model, paper crop, a checkpoint and a resume, the paper's
test mode), one row per process; ``--papermill`` also runs one row per dataset through its notebook.

    pna rehearse                        # every paper row -> results/rehearsal/cpu.csv
    pna rehearse --rows ci --papermill  # one row per dataset (what `make test` runs)
    pna rehearse --rows voc/fcn_r50_os32_pna --update
    pna rehearse --device cuda --batch authors --iters 5 --warmup 2 --same-process [--missing]
                                        # every row at the authors' per-GPU batch -> results/rehearsal/cuda.csv
"""
from __future__ import annotations

import argparse

HELP = "run every paper row end to end on tiny official-format data (the paper profile's rehearsal)"


def _batch(text: str) -> int | str:
    if text == "authors":
        return text
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"--batch must be a positive integer or 'authors', got {text!r}")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", nargs="+", help="config names (default: every paper config); 'ci' = one per dataset")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--papermill", action="store_true", help="also run one row per dataset through its notebook")
    parser.add_argument("--out", help="CSV path (default: results/rehearsal/<device>.csv; '-' writes none)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per row")
    parser.add_argument("--update", action="store_true",
                        help="merge into the existing CSV (replace the rows run now, keep the others)")
    parser.add_argument("--missing", action="store_true",
                        help="only the rows the CSV lacks or has failed (ok and oom rows are kept); implies --update")
    parser.add_argument("--batch", type=_batch, default=2,
                        help="training batch: a number, or 'authors' (the per-GPU batch of the row's authors' setting)")
    parser.add_argument("--iters", type=int, default=2, help="training iterations (>= 2: the last one after a resume)")
    parser.add_argument("--warmup", type=int, default=0, help="first iterations left out of s_per_iter")
    parser.add_argument("--workers", type=int, default=0, help="data-loader processes (0: in the training process)")
    parser.add_argument("--same-process", action="store_true",
                        help="rehearse the rows one after another in one child process (restarted after a crash)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)  # rows, in the process the parent started
    parser.add_argument("--workdir", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    import csv
    from pathlib import Path

    from pna.configs import list_configs
    from pna.paths import REPO_ROOT
    from pna.tools.rehearse import CI_ROWS, rehearse, rehearse_here

    options = {"batch": args.batch, "iters": args.iters, "warmup": args.warmup, "workers": args.workers}
    if args.child:
        rehearse_here(args.child, args.device, Path(args.workdir), **options)
        return 0
    names = list(CI_ROWS.values()) if args.rows == ["ci"] else (args.rows or list_configs())
    default = REPO_ROOT / "results" / "rehearsal" / f"{args.device}.csv"
    path = None if args.out == "-" else Path(args.out) if args.out else default
    if args.missing and path is not None and path.is_file():
        with path.open(newline="") as f:
            done = {x["config"] for x in csv.DictReader(f) if x["status"] in ("ok", "oom")}
        print(f"{len(done & set(names))} of the rows are done in {path}; rehearsing the other {len(set(names) - done)}")
        names = [name for name in names if name not in done]
    lines = rehearse(names, args.device, args.papermill, path, args.timeout, args.update or args.missing,
                     same_process=args.same_process, **options)
    if path is not None:
        print(f"wrote {path}")
    counts = {status: [x["config"] for x in lines if x["status"] == status] for status in ("ok", "oom")}
    failed = [x["config"] for x in lines if x["status"] not in counts]
    print(f"{len(counts['ok'])} ok, {len(counts['oom'])} out of GPU memory, {len(failed)} failed"
          + (f": {failed}" if failed else ""))
    return 1 if failed else 0
