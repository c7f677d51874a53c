"""Write results/fidelity.md: every paper row's resolved settings beside the authors' (pna.fidelity).

    python scripts/fidelity_report.py            # writes results/fidelity.md
    python scripts/fidelity_report.py --check    # exit 1 if the file is stale or a difference is unexplained
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pna.checkpoint import atomic_write_text  # noqa: E402
from pna.fidelity import differences, paper_rows, report_markdown  # noqa: E402
from pna.paths import REPO_ROOT  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed file instead of writing")
    args = parser.parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
