"""A short seeded fuzzing run of the weights reader (``fuzz_reader.py``, atheris / libFuzzer) in a child
process: 3,000 inputs mutated from the seed corpus (every format read, the crafted attacks) must give
no crash, hang, out-of-memory or unexpected exception. The long run is ``benchmarks/fuzz_reader.py``
(results/benchmarks/fuzz_reader.csv). Inputs that once crashed the reader are replayed from
``fuzz_regressions/`` with the seeds (``benchmarks/fuzz_reader.py`` copies what it finds there)."""
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
RUNS = 3000
SEED = 1  # libFuzzer's random seed: the same mutations on every run


@pytest.mark.slow
def test_a_short_seeded_fuzzing_run_finds_nothing(tmp_path):
    child = subprocess.run([sys.executable, str(HERE / "fuzz_reader.py"), "--seeds", str(tmp_path / "corpus"),
                            f"-runs={RUNS}", f"-seed={SEED}", "-timeout=20", "-rss_limit_mb=4096",
                            f"-artifact_prefix={tmp_path}/", "-print_final_stats=1"],
                           capture_output=True, text=True, timeout=600)
    log = "\n".join(line for line in child.stderr.splitlines() if not line.startswith("INFO: Instrumenting"))
    assert child.returncode == 0, log[-3000:]
    assert f"Done {RUNS} runs" in log, log[-3000:]
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("timeout-*")) and not list(tmp_path.glob("oom-*"))


@pytest.mark.slow
def test_every_seed_and_every_input_that_once_crashed_passes_the_target(tmp_path):
    """The fuzz target's acceptance (data only, or one line naming the file), under its memory limit, on the
    seed corpus and on the crash / hang / out-of-memory inputs a long run found (``fuzz_regressions/``)."""
    seeds = tmp_path / "seeds"
    subprocess.run([sys.executable, str(HERE / "fuzz_reader.py"), "--seeds", str(seeds), "-runs=0"], check=True,
                   capture_output=True, timeout=300)
    found = sorted(seeds.iterdir()) + sorted(HERE.glob("fuzz_regressions/[cto]*-*"))
    child = subprocess.run([sys.executable, str(HERE / "fuzz_reader.py"), *map(str, found)], capture_output=True,
                           text=True, timeout=600)
    log = "\n".join(line for line in child.stderr.splitlines() if not line.startswith("INFO: Instrumenting"))
    assert child.returncode == 0, log[-3000:]
    assert log.count("\nExecuted ") == len(found) >= 25, log[-3000:]  # 29 seeds today
