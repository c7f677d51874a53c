"""Rehearse the paper profile on this machine: every paper row end to end at the real sizes on a
tiny dataset in the official formats (real model, paper crop, a checkpoint and a resume, the paper's
test mode), one row per process; ``--papermill`` also runs one row per dataset through its notebook.

    pna rehearse                        # every paper row -> results/rehearsal/cpu.csv
    pna rehearse --rows ci --papermill  # one row per dataset (what `make test` runs)
    pna rehearse --rows voc/fcn_r50_os32_pna --update
"""
from __future__ import annotations

import argparse

HELP = "run every paper row end to end on tiny official-format data (the paper profile's rehearsal)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", nargs="+", help="config names (default: every paper config); 'ci' = one per dataset")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--papermill", action="store_true", help="also run one row per dataset through its notebook")
    parser.add_argument("--out", help="CSV path (default: results/rehearsal/<device>.csv; '-' writes none)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per row")
    parser.add_argument("--update", action="store_true",
                        help="merge into the existing CSV (replace the rows run now, keep the others)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # one row, in the process the parent started
    parser.add_argument("--workdir", help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from pna.configs import list_configs
    from pna.paths import REPO_ROOT
    from pna.tools.rehearse import CI_ROWS, rehearse, rehearse_row

    if args.child:
        print(json.dumps(rehearse_row(args.child, args.device, Path(args.workdir))), flush=True)
        return 0
    names = list(CI_ROWS.values()) if args.rows == ["ci"] else (args.rows or list_configs())
    default = REPO_ROOT / "results" / "rehearsal" / f"{args.device}.csv"
    path = None if args.out == "-" else Path(args.out) if args.out else default
    lines = rehearse(names, args.device, args.papermill, path, args.timeout, args.update)
    if path is not None:
        print(f"wrote {path}")
    failed = [x["config"] for x in lines if x["status"] != "ok"]
    print(f"{len(lines) - len(failed)} ok, {len(failed)} failed" + (f": {failed}" if failed else ""))
    return 1 if failed else 0
