#!/usr/bin/env bash
# The main job on the built-in default, Fashion-LT: set up (packages + build), build the
# benchmark, pretrain the small backbone on the Fashion-MNIST pretraining pool, train CPRFL
# with CLIP-RN50 prompts and ASL, and evaluate it (total/head/medium/tail mAP, per-class AP).
# Each step is skipped when its output already exists. Outputs go to runs/ (CPRFL_RUNS=DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
RUNS=${CPRFL_RUNS:-runs}
DATA="$RUNS/fashion-lt"
BACKBONE="$RUNS/backbone_small.cprfl"
RUN="$RUNS/fashion_lt_cprfl"
start=$(date +%s)

if [ ! -f "$DATA/stats.json" ]; then
  build/cprfl make-fashion-lt --out "$DATA"
else
  echo "demo: Fashion-LT already built in $DATA"
  build/cprfl stats --list "$DATA/train.txt" --labels "$DATA/labels.txt"
fi

if [ ! -f "$BACKBONE" ]; then
  build/cprfl pretrain-backbone --out "$BACKBONE"
else
  echo "demo: backbone already pretrained: $BACKBONE"
fi

if [ ! -f "$RUN/last.cprfl" ]; then
  build/cprfl train --config configs/fashion_lt.yaml \
    --set data.root="$DATA" --set data.train_list="$DATA/train.txt" --set data.test_list="$DATA/test.txt" \
    --set data.labels="$DATA/labels.txt" --set model.backbone_weights="$BACKBONE" --set train.out_dir="$RUN"
else
  build/cprfl train --resume "$RUN"   # finishes an interrupted run; a finished one returns at once
fi

build/cprfl eval --model "$RUN/last.cprfl" --json "$RUN/eval.json"
echo "demo: done in $(( $(date +%s) - start )) s (after the build); model $RUN/last.cprfl, metrics $RUN/eval.json"
