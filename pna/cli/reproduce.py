"""Run every notebook with papermill (smoke profile by default), then the tables notebook; executed
copies go to ``results/executed/``, the timings of a full run to ``results/benchmarks/``.

    pna reproduce                      # what `make reproduce` runs
    pna reproduce --only 00 07         # a subset, by number prefix
    pna reproduce -p device cuda       # extra notebook parameters (Python literals)
"""
from __future__ import annotations

import argparse

HELP = "run every notebook with papermill (make reproduce)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="smoke", choices=["smoke", "paper"])
    parser.add_argument("--only", nargs="+", help="notebook number prefixes, e.g. 00 07")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
                        help="extra notebook parameter (a Python literal), passed to every notebook")


def run(args: argparse.Namespace) -> int:
    from pna.configs.overrides import parse_literal
    from pna.tools.reproduce import reproduce

    reproduce(args.profile, args.only, {k: parse_literal(v) for k, v in args.parameter})
    return 0
