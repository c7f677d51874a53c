#!/usr/bin/env bash
# The GPU check (issue 23): every figure only a GPU gives, from one command, in ~9 minutes on one GPU.
#
#   scripts/gpu_check.sh [OUT_DIR] [--device cuda|cpu] [--quick] [--steps 12345] [--all]
#
# OUT_DIR (default results/gpu_check/<date-time>) receives every log and CSV. Five steps, each with
# a time budget; a step that fails or runs out of time is reported and the next one runs (step 5
# runs before step 4, which takes what is left):
#   1 tests   the tests marked `cuda` (pytest -m cuda): compiled flex forward+backward against the
#             definition, one graph for two sizes, fp16 steps with the grad scaler, dropout masks
#             after a resume, SyncBN over two GPUs (skips with one)                          150 s
#   2 bench   neighbourhood attention at the Cityscapes stage shapes, fp16 and fp32
#             (benchmarks/na_cuda.py) -> na_cuda.csv                                          120 s
#   3 fps     Table 1's four models at 512x512 (pna cost --table table1) -> cost_table1_cuda.csv, and
#             the FPS ratio PNA / FCN-OS-32 beside the paper's 27.9 / 44.9 -> fps_ratio.txt    75 s
#   5 predict `pna predict` on the GPU: images per second at 512x512 and 1024x2048, smoke and paper
#             models, whole and slide, the share spent reading and writing
#             (benchmarks/predict.py) -> predict_cuda.csv                                       90 s
#   4 rehearsal  every paper row at its authors' per-GPU batch with fp16 AMP: 5 iterations with a
#             resume after the first, seconds per iteration over the last 3, peak memory, the
#             paper-mode evaluation -> rehearsal_cuda.csv; which rows fit 24 / 40 / 80 GB -> fits.md.
#             The only step whose length grows with the rows (45): it runs last with what is left
#             of the 9 minutes, and rows already in OUT_DIR's rehearsal_cuda.csv (ok or oom) are not
#             run again, so `scripts/gpu_check.sh OUT_DIR --steps 4` continues where it stopped.
# Budgets in seconds: BUDGET_TESTS, BUDGET_BENCH, BUDGET_COST, BUDGET_PREDICT, BUDGET_REHEARSAL (default: the rest
# of BUDGET_TOTAL=540, at least 60); --all lifts the 9-minute limit (BUDGET_TOTAL=3600): every
# row in one run. Steps 2, 5 and 4 copy their CSV to results/benchmarks/na_cuda.csv,
# results/benchmarks/predict_cuda.csv and results/rehearsal/cuda.csv when they succeed (on CUDA,
# without --quick); nothing else under
# results/ is touched. --device cpu --quick: a dry run of every step's code on a CPU (CUDA tests
# skip, tiny benchmark shapes, FPS from one pass at 256x256, 2 rows); it copies nothing.
# PYTHON: the interpreter (default .venv/bin/python, else python3).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out="" device=cuda quick=0 steps=12345
while [ $# -gt 0 ]; do
    case $1 in
        --device) device=$2; shift 2 ;;
        --quick) quick=1; shift ;;
        --steps) steps=$2; shift 2 ;;
        --all) BUDGET_TOTAL=${BUDGET_TOTAL:-3600}; shift ;;
        -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
        -*) echo "gpu_check.sh: unknown option $1 (expected --device cuda|cpu, --quick, --steps 12345, --all)" >&2; exit 2 ;;
        *) out=$1; shift ;;
    esac
done
case $device in cuda|cpu) ;; *) echo "gpu_check.sh: --device must be cuda or cpu, got $device" >&2; exit 2 ;; esac
case $steps in *[!1-5]*|"") echo "gpu_check.sh: --steps takes digits 1-5, e.g. 24, got $steps" >&2; exit 2 ;; esac
out=${out:-$repo/results/gpu_check/$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out" && out=$(cd "$out" && pwd)
python=${PYTHON:-$([ -x "$repo/.venv/bin/python" ] && echo "$repo/.venv/bin/python" || echo python3)}
cd "$repo"
export HF_HUB_OFFLINE=1 PYTHONHASHSEED=0 PYTHONPATH="$repo" \
       PNA_RESULTS_DIR="$out/scratch/results" PNA_RUNS_DIR="$out/scratch/runs"
if [ "$quick" = 1 ]; then  # a 2-core CPU is slow: the dry run's budgets are its own
    budgets=("${BUDGET_TESTS:-900}" "${BUDGET_BENCH:-600}" "${BUDGET_COST:-900}" "${BUDGET_REHEARSAL:-2400}" "${BUDGET_PREDICT:-600}")
else  # 9 minutes in all on one GPU; the rehearsal's budget is set when it starts
    budgets=("${BUDGET_TESTS:-150}" "${BUDGET_BENCH:-120}" "${BUDGET_COST:-75}" "${BUDGET_REHEARSAL:-}" "${BUDGET_PREDICT:-90}")
fi
total_budget=${BUDGET_TOTAL:-540}
start_all=$SECONDS
[ -f "$out/steps.tsv" ] || printf 'step\tseconds\tbudget_s\toutcome\n' > "$out/steps.tsv"
first_line=$(($(wc -l < "$out/steps.tsv") + 1))  # this run's lines of steps.tsv start here
wanted() { [[ $steps == *$1* ]]; }

# run_step NAME BUDGET COMMAND...: output to the screen and NAME.log; sets step_ok (1 or 0)
run_step() {
    local name=$1 budget=$2 start=$SECONDS rc=0 outcome=ok
    shift 2
    echo "== $name (budget ${budget} s): $*"
    timeout --kill-after=20 "$budget" "$@" 2>&1 | tee "$out/$name.log" || rc=$?
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then outcome="ran out of its ${budget} s"
    elif [ "$rc" != 0 ]; then outcome="failed (exit $rc)"; fi
    printf '%s\t%s\t%s\t%s\n' "$name" "$((SECONDS - start))" "$budget" "$outcome" >> "$out/steps.tsv"
    echo "== $name: $outcome in $((SECONDS - start)) s"
    if [ "$outcome" = ok ]; then step_ok=1; else step_ok=0; fi
}

# copy_if_ok FILE TARGET: the committed place gets the CSV of a successful GPU run only
copy_if_ok() {
    if [ "$step_ok" = 1 ] && [ "$device" = cuda ] && [ "$quick" = 0 ] && [ -s "$1" ]; then
        mkdir -p "$(dirname "$2")" && cp "$1" "$2" && echo "copied $1 -> $2"
    else
        echo "not copied to $2 (the step did not succeed, or a CPU / --quick run)"
    fi
}

{
    echo "date: $(date -Is)"; echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
    "$python" -c "import torch, platform; print('python', platform.python_version(), '| torch', torch.__version__,
'| cuda', torch.version.cuda, '|', torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')"
    if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv; fi
} > "$out/environment.txt" 2>&1 || true
cat "$out/environment.txt"

# 1: the CUDA tests (on a CPU they all skip, each with its reason)
if wanted 1; then
    run_step 1_tests "${budgets[0]}" "$python" -m pytest tests -m cuda -p no:cacheprovider -ra -q
fi

# 2: the neighbourhood-attention benchmark
if wanted 2; then
    bench=(--device "$device" --out "$out/na_$device.csv")
    if [ "$quick" = 1 ]; then bench+=(--quick); fi
    run_step 2_bench "${budgets[1]}" "$python" benchmarks/na_cuda.py "${bench[@]}"
    copy_if_ok "$out/na_$device.csv" "$repo/results/benchmarks/na_cuda.csv"
fi

# 3: FPS of Table 1's models, and the ratio PNA / FCN-OS-32 beside the paper's
if wanted 3; then
    fps=(--fps-iters 20)
    if [ "$quick" = 1 ]; then fps=(--fps-iters 1 --size 256 256); fi
    rm -f "$out/cost_table1_$device.csv"  # pna cost refuses to overwrite: this run's figures replace an earlier run's
    run_step 3_fps "${budgets[2]}" "$python" -m pna cost --table table1 --device "$device" "${fps[@]}" \
        --out "$out/cost_table1_$device.csv"
    if [ -s "$out/cost_table1_$device.csv" ]; then
        "$python" - "$out/cost_table1_$device.csv" <<'PY' | tee "$out/fps_ratio.txt" || true
import sys

import pandas as pd

t = pd.read_csv(sys.argv[1]).set_index("model")
pna, fcn = t.loc["fcn_r50_os32_pna"], t.loc["fcn_r50_os32"]
print(f"FPS at {pna['size']} on {pna['device']}: " + ", ".join(f"{m} {t.loc[m, 'fps']:.2f}" for m in t.index))
print(f"PNA / FCN-OS-32: ours {pna['fps'] / fcn['fps']:.2f}, paper {pna['paper_fps_3090']} / "
      f"{fcn['paper_fps_3090']} = {pna['paper_fps_3090'] / fcn['paper_fps_3090']:.2f} (RTX 3090)")
PY
    fi
fi

# 5: pna predict's speed (before the rehearsal, which takes what is left of the time)
if wanted 5; then
    predict=(--device "$device" --out "$out/predict_$device.csv")
    if [ "$quick" = 1 ]; then predict+=(--quick); else predict+=(--images 8 --workers 4); fi
    run_step 5_predict "${budgets[4]}" "$python" benchmarks/predict.py "${predict[@]}"
    copy_if_ok "$out/predict_$device.csv" "$repo/results/benchmarks/predict_cuda.csv"
fi

# 4: the rehearsal at the authors' per-GPU batch (rows already done in OUT_DIR are kept)
if wanted 4; then
    if [ "$quick" = 1 ]; then
        rehearsal=(--rows voc/fcn_r50_os32 voc/fcn_r50_os32_pna_nam --iters 3 --warmup 2 --workers 2)
    else
        rehearsal=(--iters 5 --warmup 2 --workers 4 --timeout 120)
    fi
    budget=${budgets[3]:-$(( total_budget - (SECONDS - start_all) > 60 ? total_budget - (SECONDS - start_all) : 60 ))}
    run_step 4_rehearsal "$budget" "$python" -m pna rehearse --device "$device" --batch authors \
        --same-process --missing "${rehearsal[@]}" --out "$out/rehearsal_$device.csv"
    rehearsal_ok=$step_ok
    if [ -s "$out/rehearsal_$device.csv" ]; then
        "$python" -m pna plan --measured "$out/rehearsal_$device.csv" | tee "$out/fits.md" || true
    fi
    step_ok=$rehearsal_ok
    copy_if_ok "$out/rehearsal_$device.csv" "$repo/results/rehearsal/cuda.csv"
    if [ "$step_ok" = 0 ]; then echo "to continue the rehearsal where it stopped: $0 $out --steps 4"; fi
fi

echo "== summary: $((SECONDS - start_all)) s in all; everything is in $out"
column -t -s $'\t' "$out/steps.tsv" 2>/dev/null || cat "$out/steps.tsv"
if tail -n +"$first_line" "$out/steps.tsv" | grep -qv $'\tok$'; then exit 1; fi
