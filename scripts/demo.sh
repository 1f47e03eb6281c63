#!/usr/bin/env bash
# The main job on the built-in default: set up, build the Fashion-LT benchmark (once) and
# show its statistics. Output goes to runs/ (override with CPRFL_RUNS=DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
RUNS=${CPRFL_RUNS:-runs}
DATA="$RUNS/fashion-lt"
if [ ! -f "$DATA/stats.json" ]; then
  build/cprfl make-fashion-lt --out "$DATA" --seed 0
else
  echo "demo: using the Fashion-LT benchmark already in $DATA"
fi
build/cprfl stats --list "$DATA/train.txt" --labels "$DATA/labels.txt"
