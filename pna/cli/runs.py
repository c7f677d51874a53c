"""The runs under runs/: list them, show one, delete the ones no longer wanted, compare some.

    pna runs                                   # every run: row, profile, hash, status, iterations, mIoU, size, age
    pna runs --status interrupted --row voc/   # filtered (status, and a part of the row's name)
    pna runs show fcn_r50_os32_pna-smoke       # one run (a folder name or its unique start): config
                                               # against the row's default, batch split, provenance
    pna runs clean --failed --interrupted      # asks first (--yes: does not); --older-than 14d
    pna runs compare RUN RUN --out cmp         # curves and final metrics: cmp.png, cmp.md

A run's status: running (its lock is live: who holds it), finished, failed (with its last error),
interrupted (at the iteration of its last checkpoint). ``clean`` deletes run folders only, never a
results JSON under results/, and never a run being trained.
"""
from __future__ import annotations

import argparse
import sys

HELP = "list, show, clean and compare the training runs under runs/"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pna.runs.index import STATUSES

    parser.add_argument("--dir", help="the runs folder (default: runs/, or $PNA_RUNS_DIR)")
    parser.add_argument("--status", choices=STATUSES, help="(list) only runs of this status")
    parser.add_argument("--row", help="(list) only runs whose row contains this text, e.g. voc/ or fcn_r50_os32_pna")
    actions = parser.add_subparsers(dest="action", metavar="[show|clean|compare]")
    show = actions.add_parser("show", help="one run in detail")
    show.add_argument("run", help="a run folder's name (or its unique start) or path")
    clean = actions.add_parser("clean", help="delete failed, interrupted or old run folders (asks first)")
    clean.add_argument("--failed", action="store_true", help="runs whose training failed")
    clean.add_argument("--interrupted", action="store_true", help="runs stopped before the end (not running)")
    clean.add_argument("--older-than", metavar="AGE", help="runs unchanged for longer than AGE (7d, 12h, 30min); "
                                                             "alone: of any status, finished ones included")
    clean.add_argument("--yes", action="store_true", help="do not ask")
    compare = actions.add_parser("compare", help="curves and final per-stage metrics of runs side by side")
    compare.add_argument("runs", nargs="+", metavar="RUN")
    compare.add_argument("--out", default="runs_compare", help="writes OUT.png and OUT.md (default: runs_compare)")


def _list(args, infos) -> int:
    from pna.runs.index import runs_table

    shown = [i for i in infos if (args.status is None or i.status == args.status)
             and (args.row is None or args.row in i.row or args.row in i.name)]
    if not shown:
        print("no runs" + (" match" if infos else f" under {args.dir or 'runs/'}"))
        return 0
    print(runs_table(shown))
    return 0


def _clean(args, infos) -> int:
    from pna.runs.clean import delete_runs, parse_age, select_runs
    from pna.runs.index import human_size

    older = None if args.older_than is None else parse_age(args.older_than)
    chosen, running = select_runs(infos, args.failed, args.interrupted, older)
    for info in running:
        print(f"skipped {info.path}: {info.detail}")
    if not chosen:
        print("nothing to delete")
        return 0
    total = sum(i.size_bytes for i in chosen)
    for info in chosen:
        print(f"  {info.name}  {info.detail}  {human_size(info.size_bytes)}")
    if not args.yes:
        try:
            answer = input(f"delete these {len(chosen)} run folder(s), {human_size(total)}? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("nothing deleted")
            return 1
    freed = delete_runs(chosen)
    print(f"freed {human_size(freed)} ({freed} bytes); results JSONs under results/ are kept")
    return 0


def run(args: argparse.Namespace) -> int:
    from pna.runs.index import find_run, run_info, scan_runs

    if args.action == "show":
        from pna.runs.show import describe_run

        print(describe_run(run_info(find_run(args.run, args.dir))))
        return 0
    if args.action == "compare":
        from pna.analysis.run_compare import compare_runs

        _, table = compare_runs(args.runs, args.dir, args.out)
        print(table)
        print(f"figure: {args.out}.png; table: {args.out}.md", file=sys.stderr)
        return 0
    infos = scan_runs(args.dir)
    return _clean(args, infos) if args.action == "clean" else _list(args, infos)
