"""The runs under ``runs/`` as a user sees them (``pna runs``): which exist, which finished, which
were interrupted at which iteration or failed with which error, which are being trained and by whom
(:mod:`pna.runs.index`); one run in detail (:mod:`pna.runs.show`); deleting the ones no longer
wanted (:mod:`pna.runs.clean`). Comparing runs' curves is a figure: :mod:`pna.analysis.run_compare`.
"""
from pna.runs.index import STATUSES, RunInfo, find_run, run_info, runs_table, scan_runs

__all__ = ["STATUSES", "RunInfo", "find_run", "run_info", "runs_table", "scan_runs"]
