"""Write ``results/fidelity.md`` (the paper profile's pipeline, measured, against the audit of the
authors' code, with the reason for each difference) and ``docs/authors_settings.md`` (the authors'
per-row settings as the paper profile uses them, from the audit).

    pna fidelity            # writes both files
    pna fidelity --check    # exit 1 if a file is stale or a difference is unexplained
"""
from __future__ import annotations

import argparse

HELP = "the paper profile measured against the audit of the authors' code (results/fidelity.md)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true", help="compare with the committed files instead of writing")


def run(args: argparse.Namespace) -> int:
    import warnings

    from pna.engine.checkpoint import atomic_write_text
    from pna.paths import REPO_ROOT
    from pna.tools.audit import SETTINGS_MD, settings_markdown
    from pna.tools.fidelity_report import all_results, report_markdown, unexplained

    warnings.simplefilter("ignore")
    per_row = all_results()
    texts = {REPO_ROOT / "results" / "fidelity.md": report_markdown(per_row), SETTINGS_MD: settings_markdown()}
    missing = unexplained(per_row)
    if args.check:
        stale = [str(p) for p, text in texts.items() if not p.is_file() or p.read_text() != text]
        print(f"stale: {stale or 'none'}; unexplained differences: {missing or 'none'}")
        return 1 if stale or missing else 0
    for path, text in texts.items():
        atomic_write_text(text, path)
    print(f"wrote {', '.join(str(p) for p in texts)}; unexplained differences: {missing or 'none'}")
    return 1 if missing else 0
