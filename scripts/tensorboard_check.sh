#!/usr/bin/env bash
# Screenshots of the "Watch a run" section (not part of CI): trains tiny smoke runs into OUT_DIR/runs
# (64 px synthetic images, narrow models: one with --tensorboard and an evaluation every 20 iterations,
# one stopped early, one that fails on a non-finite loss), starts TensorBoard on localhost, and saves
# with headless Chromium
#   OUT_DIR/tensorboard_scalars.png, OUT_DIR/tensorboard_images.png   (TensorBoard's own pages)
#   OUT_DIR/pna_runs.png                                             (`pna runs` output, as a terminal shows it)
#
#   scripts/tensorboard_check.sh OUT_DIR
# Needs Debian's chromium (apt-get install chromium), playwright-core in $PLAYWRIGHT_DIR (npm install
# --prefix "$PLAYWRIGHT_DIR" playwright-core; nothing is added to this repository) and the tensorboard
# extra (pip install -e '.[tensorboard]').
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd)
python=${PYTHON:-$repo/.venv/bin/python}
playwright=${PLAYWRIGHT_DIR:?set PLAYWRIGHT_DIR to a folder with node_modules/playwright-core}
port=${PORT:-6066}
export PYTHONPATH="$repo" HF_HUB_OFFLINE=1 PNA_RESULTS_DIR="$out/results" PNA_RUNS_DIR="$out/runs" PNA_PROGRESS=off
pna() { "$python" -m pna "$@"; }

tiny=("data.root='$out/synthetic'" "data.options={'num_train': 32, 'num_val': 4, 'size': 64, 'seed': 0}"
      "data.crop=(64, 64)" "train.iters=60" "train.log_interval=2" "train.checkpoint_interval=10"
      "model.overrides.embed_dims=(32, 32, 32, 32)" "model.overrides.head_channels=16" "model.overrides.aux_channels=16")
pna train --config voc/fcn_r50_os32_pna --tensorboard --set "${tiny[@]}" train.eval_interval=20
pna train --config voc/fcn_r50_os32_pna_nam --stop-after 30 --set "${tiny[@]}" || true      # interrupted at 30 of 60
pna train --config voc/fcn_r50_os32_pna --set "${tiny[@]}" optim.lr=1e12 train.seed=1 \
    --results-dir "$out/results_of_failed" || true                                            # fails: non-finite loss
pna runs | tee "$out/pna_runs.txt"

"$python" -m tensorboard.main --logdir "$out/runs" --host 127.0.0.1 --port "$port" > "$out/tensorboard.log" 2>&1 &
server=$!
trap 'pkill -P $server 2>/dev/null; kill $server 2>/dev/null' EXIT
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port/" >/dev/null && break; sleep 1; done
kill -0 $server 2>/dev/null || { echo "TensorBoard did not start (port $port in use? PORT=...): $out/tensorboard.log" >&2; exit 1; }
NODE_PATH="$playwright/node_modules" node "$repo/scripts/tensorboard_check.js" "http://127.0.0.1:$port" "$out"
