#!/usr/bin/env bash
# The paper's experiment in miniature on Fashion-LT, tuned the same way for every variant
# (issue 19): linear-head baselines vs CPRFL with random or CLIP prompts, three losses, and
# each DPBP path detached, all on the same pretrained backbone and the same epoch budget.
#   1. Sweep: each variant's learning rate (and, for the linear head, the backbone's lr
#      multiplier) over a small grid, trained on the training list minus a validation part
#      (data.val_fraction) and scored on that part only; SWEEP_SEEDS runs per grid point.
#   2. Choose: the grid point with the best mean validation mAP (`cprfl summarize --split val
#      --best`); a choice at the grid's highest or lowest lr (or multiplier) extends the grid
#      one rung that way (up to MAX_EXTEND times per axis). The test list plays no part.
#   3. Report: the chosen settings on the whole training list, SEEDS runs per variant, and the
#      test table with the paired differences against cprfl_clip_asl (95% intervals).
# Writes results/$TABLE.{md,json} (the test table), results/${TABLE}_sweep.{md,json} (every
# grid point's validation figures) and results/${TABLE}_chosen.txt (the chosen settings).
# Finished runs are kept and skipped on a re-run; a run whose settings changed is made anew.
# Every run trains in float32 (optim.amp_cpu=false), so the table means the same on every CPU;
# cprfl_clip_asl_bf16, run only when ONLY names it, is the bf16-autocast check.
# Environment: SEEDS (default "0 1 2 3 4"), SWEEP_SEEDS (default "100 101"), EPOCHS (default:
# the config's), RUNS (default runs), ONLY (names of the variants to run; default all),
# TABLE (default fashion_lt_experiments).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/fashion_lt_setup.sh
OUT="$RUNS/experiments"
SEEDS=${SEEDS:-"0 1 2 3 4"}
SWEEP_SEEDS=${SWEEP_SEEDS:-"100 101"}
TABLE=${TABLE:-fashion_lt_experiments}
VAL_FRACTION=0.15
LINEAR_LRS="3e-3 1e-2 3e-2"      # centred on the lr the seed study found the head needs
LINEAR_MULTS="0.01 0.1"
CPRFL_LRS="3e-4 1e-3 3e-3"       # centred on the recipe's lr
LADDER=(1e-5 3e-5 1e-4 3e-4 1e-3 3e-3 1e-2 3e-2 1e-1 3e-1 1)   # the rungs a grid may extend to
MULT_LADDER=(0.0001 0.001 0.01 0.1 1)
MAX_EXTEND=2

# name | its settings | how its lr is chosen: linear (lr × multiplier grid), cprfl (lr grid)
# or the name of the variant whose choice it takes (the ablations keep their parent's).
VARIANTS=(
  "linear_bce|model.type=linear loss.name=bce|linear"
  "linear_asl|model.type=linear loss.name=asl|linear"
  "linear_dbfocal|model.type=linear loss.name=db_focal|linear"
  "cprfl_randn_asl|prompts.source=randn loss.name=asl|cprfl"
  "cprfl_clip_bce|loss.name=bce|cprfl"
  "cprfl_clip_dbfocal|loss.name=db_focal|cprfl"
  "cprfl_clip_asl|loss.name=asl|cprfl"
  "cprfl_clip_asl_detach_classifier_path|loss.name=asl model.detach_classifier_path=true|cprfl_clip_asl"
  "cprfl_clip_asl_detach_interaction_path|loss.name=asl model.detach_interaction_path=true|cprfl_clip_asl"
  "cprfl_clip_asl_bf16|loss.name=asl optim.amp_cpu=true|cprfl_clip_asl"
)
# Run only when ONLY names them: checks beside the table (bf16 autocast: results/bf16_training.md).
EXTRAS=" cprfl_clip_asl_bf16 "

selected() {
  if [ -z "${ONLY:-}" ]; then [[ "$EXTRAS" != *" $1 "* ]]; else [[ " $ONLY " == *" $1 "* ]]; fi
}

# train DIR SEED SETTING...: one run into DIR unless DIR already holds a finished run with
# the same settings. Returns 1 when the run fails (a diverged sweep point), leaving DIR.failed.
train() {
  local dir=$1 seed=$2; shift 2
  local args=(--set optim.amp_cpu=false)
  for s in "$@"; do args+=(--set "$s"); done
  [ -n "${EPOCHS:-}" ] && args+=(--set "optim.epochs=$EPOCHS")
  local wanted="${args[*]} seed=$seed"
  if [ -f "$dir/metrics.jsonl" ] && [ "$(cat "$dir/settings.txt" 2> /dev/null)" == "$wanted" ]; then return 0; fi
  [ -f "$dir.failed" ] && [ "$(head -n 1 "$dir.failed")" == "$wanted" ] && return 1
  rm -rf "$dir" "$dir.tmp" "$dir.failed"
  mkdir -p "$(dirname "$dir")"
  echo "== $(basename "$dir")"
  if "$TOOL" train --config configs/fashion_lt.yaml --quiet "${args[@]}" \
      --set data.root="$DATA" --set data.train_list="$DATA/train.txt" --set data.test_list="$DATA/test.txt" \
      --set data.labels="$DATA/labels.txt" --set model.backbone_weights="$BACKBONE" \
      --set train.seed="$seed" --set train.eval_every=1000 --set train.out_dir="$dir.tmp" > "$dir.log" 2>&1; then
    echo "$wanted" > "$dir.tmp/settings.txt"
    mv "$dir.tmp" "$dir"   # runs land by rename when done
    rm -f "$dir.log"
  else
    { echo "$wanted"; tail -n 5 "$dir.log"; } > "$dir.failed"
    echo "   failed: $(tail -n 1 "$dir.log")"
    rm -rf "$dir.tmp" "$dir.log"
    return 1
  fi
}

start=$(date +%s)
mkdir -p results
declare -A CHOSEN   # variant -> its chosen settings ("optim.lr=... optim.backbone_lr_mult=...")

# 1–2. Sweep on the validation part and choose.
sweep_dirs=()
for entry in "${VARIANTS[@]}"; do
  IFS='|' read -r name settings how <<< "$entry"
  [[ "$how" == linear || "$how" == cprfl ]] || continue
  # An ablation that is selected needs its parent's choice, so the parent is swept too.
  needed=false
  for other in "${VARIANTS[@]}"; do
    IFS='|' read -r other_name _ other_how <<< "$other"
    selected "$other_name" && [[ "$other_name" == "$name" || "$other_how" == "$name" ]] && needed=true
  done
  $needed || continue
  read -r -a base <<< "$settings"
  mults="1"; lrs=$CPRFL_LRS
  [ "$how" == linear ] && mults=$LINEAR_MULTS lrs=$LINEAR_LRS
  point_dirs=()
  # sweep_point LR MULT: SWEEP_SEEDS runs at one grid point; a point with a failed (diverged)
  # run is left out of the choice.
  sweep_point() {
    local lr=$1 mult=$2 seed dir point grid runs=()
    grid=(optim.lr="$lr")
    point="lr${lr}"
    [ "$how" == linear ] && grid+=(optim.backbone_lr_mult="$mult") && point+="_mult${mult}"
    for seed in $SWEEP_SEEDS; do
      dir="$OUT/sweep/${name}__${point}_seed${seed}"
      if train "$dir" "$seed" "${base[@]}" "${grid[@]}" data.val_fraction="$VAL_FRACTION"; then
        runs+=("$dir")
      else
        return 0
      fi
    done
    point_dirs+=("${runs[@]}")
  }
  sweep_lr() { local mult; for mult in $mults; do sweep_point "$1" "$mult"; done; }
  # beyond LADDER TRIED VALUE: when VALUE is the lowest or highest of TRIED (ascending), sets
  # NEXT to the ladder's next rung that way and adds it to TRIED; else leaves NEXT empty.
  beyond() {
    local -n ladder=$1 values=$2
    local i
    NEXT=""
    for i in "${!ladder[@]}"; do
      [ "${ladder[$i]}" == "$3" ] || continue
      if [ "$3" == "${values[-1]}" ] && (( i + 1 < ${#ladder[@]} )); then NEXT=${ladder[$((i + 1))]}; values+=("$NEXT"); fi
      if [ -z "$NEXT" ] && [ "$3" == "${values[0]}" ] && (( i > 0 )); then NEXT=${ladder[$((i - 1))]}; values=("$NEXT" "${values[@]}"); fi
    done
    return 0
  }
  read -r -a tried_lrs <<< "$lrs"
  read -r -a tried_mults <<< "$mults"
  for lr in $lrs; do sweep_lr "$lr"; done
  # A choice on the edge of the grid goes one rung further that way (at most MAX_EXTEND times
  # per axis), so that no variant is held back by where its grid happened to end: a new lr is
  # tried at every multiplier, a new multiplier at the chosen lr.
  lr_steps=0; mult_steps=0
  while true; do
    [ ${#point_dirs[@]} -gt 0 ] || { echo "every sweep run of $name failed" >&2; exit 1; }
    best=$("$TOOL" summarize --split val --best "${point_dirs[@]}" 2> /dev/null)
    point=${best#"${name}__"}
    lr=${point%%_mult*}; lr=${lr#lr}
    mult=${point#*_mult}
    NEXT=""
    (( lr_steps < MAX_EXTEND )) && beyond LADDER tried_lrs "$lr"
    if [ -n "$NEXT" ]; then
      lr_steps=$((lr_steps + 1))
      echo "-- $name: best at the grid's edge (lr $lr); trying lr $NEXT"
      sweep_lr "$NEXT"
      continue
    fi
    [ "$how" == linear ] && (( mult_steps < MAX_EXTEND )) && beyond MULT_LADDER tried_mults "$mult"
    if [ -n "$NEXT" ]; then
      mult_steps=$((mult_steps + 1))
      mults+=" $NEXT"
      echo "-- $name: best at the grid's edge (multiplier $mult); trying multiplier $NEXT at lr $lr"
      sweep_point "$lr" "$NEXT"
      continue
    fi
    break
  done
  sweep_dirs+=("${point_dirs[@]}")
  CHOSEN[$name]="optim.lr=$lr"
  [ "$how" == linear ] && CHOSEN[$name]+=" optim.backbone_lr_mult=$mult"
  echo "-- $name: chose ${CHOSEN[$name]}"
done
"$TOOL" summarize --split val "${sweep_dirs[@]}" --json "results/${TABLE}_sweep.json" \
  --markdown "results/${TABLE}_sweep.md" > /dev/null 2>&1

# 3. The chosen settings, SEEDS runs each, scored on the test list.
dirs=()
chosen_text="# Settings chosen on the validation part (data.val_fraction=$VAL_FRACTION, seeds $SWEEP_SEEDS)"
for entry in "${VARIANTS[@]}"; do
  IFS='|' read -r name settings how <<< "$entry"
  selected "$name" || continue
  parent=$name
  [[ "$how" == linear || "$how" == cprfl ]] || parent=$how
  read -r -a base <<< "$settings ${CHOSEN[$parent]}"
  chosen_text+=$'\n'"$name: ${CHOSEN[$parent]}"
  for seed in $SEEDS; do
    dir="$OUT/final/${name}_seed${seed}"
    train "$dir" "$seed" "${base[@]}" || { echo "run $dir failed: see $dir.failed" >&2; exit 1; }
    dirs+=("$dir")
  done
done
echo "$chosen_text" > "results/${TABLE}_chosen.txt"
reference=()
selected cprfl_clip_asl && reference=(--reference cprfl_clip_asl)
"$TOOL" summarize "${dirs[@]}" "${reference[@]}" --json "results/$TABLE.json" --markdown "results/$TABLE.md"
echo "experiments: $(( $(date +%s) - start )) s wall time"
