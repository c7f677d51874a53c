"""Write ``results/fidelity.md``: every paper row's settings, as the paper profile builds them,
beside the authors', with the reason for each difference.

    pna fidelity            # writes results/fidelity.md
    pna fidelity --check    # exit 1 if the file is stale or a difference is unexplained
"""
from __future__ import annotations

import argparse

HELP = "the paper profile's settings beside the authors' (results/fidelity.md)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true", help="compare with the committed file instead of writing")


def run(args: argparse.Namespace) -> int:
    import warnings

    from pna.engine.checkpoint import atomic_write_text
    from pna.paths import REPO_ROOT
    from pna.tools.fidelity import differences, paper_rows, report_markdown

    warnings.simplefilter("ignore")
    text = report_markdown()
    path = REPO_ROOT / "results" / "fidelity.md"
    unexplained = [(n, d.field) for n in paper_rows() for d in differences(n) if not d.explained]
    if args.check:
        stale = not path.is_file() or path.read_text() != text
        print(f"{path}: {'stale' if stale else 'up to date'}; unexplained differences: {unexplained or 'none'}")
        return 1 if stale or unexplained else 0
    atomic_write_text(text, path)
    print(f"wrote {path}; unexplained differences: {unexplained or 'none'}")
    return 1 if unexplained else 0
