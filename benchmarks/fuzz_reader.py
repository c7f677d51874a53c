"""The long fuzzing run of the weights reader: how many inputs, and what came of them.

Runs ``tests/fuzz_reader.py`` (atheris / libFuzzer, coverage-guided; each input read by
``pna.files.load_file`` and by the safetensors reader) for ``--runs`` inputs from the seed corpus,
under ``nice -n 10`` (the CPU is shared), with a per-input timeout and an RSS limit, then writes one
row to ``results/benchmarks/fuzz_reader.csv``: inputs, crashes (segfaults and unexpected exceptions or
messages: libFuzzer's ``crash-*``), hangs (``timeout-*``), out-of-memory (``oom-*``), inputs loaded as
data, the distinct kinds of refusal and damage seen, every one of them a single line naming the file,
the wall time and the commit. A crash stops libFuzzer at the first crashing input. The kinds with their counts go to ``fuzz_reader_kinds.csv``. Inputs that crashed
are copied to ``tests/fuzz_regressions/`` for the tests to replay.

    python benchmarks/fuzz_reader.py                 # 100,000 inputs (hours on the shared 2-core CPU)
    python benchmarks/fuzz_reader.py --runs 5000
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pna.paths import results_dir  # noqa: E402

TIMEOUT_S = 20  # per input: a genuine file of the seed corpus reads in well under a second
RSS_LIMIT_MB = 4096  # the process holds ~1 GB after importing torch; more is a blow-up
SEED = 1


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000, help="inputs to try (default 100000)")
    parser.add_argument("--out", type=Path, default=None, help="CSV to write (default results/benchmarks/fuzz_reader.csv)")
    return parser.parse_args()


def main() -> None:
    args = _parse()
    work = Path(tempfile.mkdtemp(prefix="fuzz_reader-run-"))
    stats = work / "stats.json"
    commit = _commit()  # before the run: the code the fuzzer imports
    command = ["nice", "-n", "10", sys.executable, str(ROOT / "tests" / "fuzz_reader.py"), "--seeds", str(work / "corpus"),
               f"-runs={args.runs}", f"-seed={SEED}", f"-timeout={TIMEOUT_S}", f"-rss_limit_mb={RSS_LIMIT_MB}",
               f"-artifact_prefix={work}/", "-print_final_stats=1", f"-dict={_dictionary(work)}"]
    start = time.time()
    child = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "FUZZ_STATS": str(stats),
                                                                         "PYTHONPATH": str(ROOT)})
    seconds = time.time() - start
    log = "\n".join(line for line in child.stderr.splitlines() if not line.startswith("INFO: Instrumenting"))
    (work / "fuzz.log").write_text(log)
    done = re.search(r"Done (\d+) runs in (\d+) second", log)
    artifacts = {kind: sorted(work.glob(f"{kind}-*")) for kind in ("crash", "timeout", "oom")}
    kinds = json.loads(stats.read_text()) if stats.is_file() else {}
    inputs, loaded = kinds.pop("inputs", 0), kinds.pop("loaded", 0)
    _keep(artifacts)
    out = args.out or results_dir() / "benchmarks" / "fuzz_reader.csv"
    out.parent.mkdir(parents=True, exist_ok=True)
    row = {"inputs": int(done.group(1)) if done else inputs, "crashes": len(artifacts["crash"]),
           "hangs": len(artifacts["timeout"]), "out_of_memory": len(artifacts["oom"]),
           "reads_loaded": loaded, "distinct_refusal_kinds": len(kinds), "refusals_one_line_naming_the_file": "all"
           if child.returncode == 0 else "see crashes", "exit_status": child.returncode,
           "wall_s": round(seconds), "coverage": (re.findall(r"cov: (\d+)", log) or ["?"])[-1], "commit": commit}
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        writer.writeheader()
        writer.writerow(row)
    with open(out.with_name("fuzz_reader_kinds.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["reader: kind (numbers and names replaced by _)", f"reads (stats every 500 inputs, of {inputs})"])
        writer.writerows(sorted(kinds.items(), key=lambda item: -item[1]))
    print(json.dumps(row), f"\nlog: {work / 'fuzz.log'}")


def _commit() -> str:
    """The commit the reader was fuzzed at (``+changes`` when pna/files or the target differ from it)."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    changed = subprocess.run(["git", "status", "--porcelain", "pna/files", "tests/fuzz_reader.py"], cwd=ROOT,
                             capture_output=True, text=True).stdout.strip()
    return head + ("+changes" if changed else "")


def _dictionary(work: Path) -> Path:
    path = work / "pickle.dict"
    subprocess.run([sys.executable, str(ROOT / "tests" / "fuzz_reader.py"), "--dict", str(path)], check=True,
                   capture_output=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return path


def _keep(artifacts: dict[str, list[Path]]) -> None:
    """Copy what crashed or hung into tests/fuzz_regressions/ (the tests replay every file there)."""
    folder = ROOT / "tests" / "fuzz_regressions"
    for paths in artifacts.values():
        for path in paths:
            folder.mkdir(exist_ok=True)
            shutil.copy(path, folder / path.name)


if __name__ == "__main__":
    main()
