#!/usr/bin/env bash
# Try the NAM explorer in a real browser (not part of CI): start JupyterLab headless on localhost,
# open notebook 00 in headless Chromium, run it, click the explorer, save screenshots.
#
#   scripts/browser_check.sh OUT_DIR [RUNS_DIR]
# Needs Debian's chromium (apt-get install chromium) and playwright-core in $PLAYWRIGHT_DIR
# (npm install --prefix "$PLAYWRIGHT_DIR" playwright-core; nothing is added to this repository).
# RUNS_DIR (default: a fresh folder) is where the notebook's model is trained or found.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "$1" && cd "$1" && pwd)
runs=${2:-$out/runs}
python=${PYTHON:-$repo/.venv/bin/python}
playwright=${PLAYWRIGHT_DIR:?set PLAYWRIGHT_DIR to a folder with node_modules/playwright-core}
port=${PORT:-8899}
token=pna-browser-check
lab=$(mktemp -d)
settings=$lab/.settings/@jupyterlab/apputils-extension  # no "Jupyter news?" toast over the screenshots
mkdir -p "$settings" && echo '{"fetchNews": "false"}' > "$settings/notification.jupyterlab-settings"
cp "$repo/notebooks/00_nam_walkthrough.ipynb" "$lab/"   # a copy: the run's outputs stay out of the repo
export PYTHONPATH="$repo" HF_HUB_OFFLINE=1 PNA_RESULTS_DIR="$out/results" PNA_RUNS_DIR="$runs"
root_flag=$([ "$(id -u)" = 0 ] && echo --allow-root || true)
"$python" -m jupyterlab --no-browser --ip=127.0.0.1 --port="$port" --IdentityProvider.token="$token" $root_flag \
    --ServerApp.root_dir="$lab" --LabApp.user_settings_dir="$lab/.settings" \
    --LabApp.news_url=None --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate \
    > "$out/jupyterlab.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$lab"' EXIT
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$port/api/status?token=$token" >/dev/null && break; sleep 1; done
NODE_PATH="$playwright/node_modules" node "$repo/scripts/browser_check.js" "http://127.0.0.1:$port" "$token" \
    00_nam_walkthrough.ipynb "$out"
