#!/usr/bin/env bash
# Kill-and-resume: trains a small Fashion-LT run uninterrupted, then the same run again while
# killing it KILLS times and continuing it each time with `cprfl train --resume DIR` (or
# starting it again when it died before its first checkpoint). The final metrics.jsonl (timing
# fields aside) and every weight tensor in last.cprfl must equal the uninterrupted run's.
#
# The kills are deterministic: CPRFL_FAULT_AT=<point>:<n> makes the run SIGKILL itself the n-th
# time it reaches a fault point (include/cprfl/common/fault_point.h). Kill i aims at epoch
# i*EPOCHS/KILLS and at the points in turn — in a training step (between backward and the
# optimizer step), in an evaluation, in the checkpoint write (half the temporary file written,
# before the rename). Each kill must land: exit status 137, the hook's line in the log, the
# checkpoint and metrics.jsonl exactly one epoch behind the killed one, and for a checkpoint
# write the half-written temporary beside the intact previous checkpoint (the next run must
# remove it). A kill that does not land fails the test.
#
#   tests/kill_resume.sh TOOL SOURCE_DIR [KILLS]     (CTest runs KILLS=3: one kill per point)
#   CPRFL_KILL_EPOCHS=20 tests/kill_resume.sh build/cprfl . 10   (the 10-kill run: more epochs than kills)
#
# Needs jq and Fashion-MNIST (Debian's dataset-fashion-mnist; scripts/setup.sh installs both).
# Exits 77 (CTest: skipped) without Fashion-MNIST, 1 without jq.
set -euo pipefail
TOOL=$(realpath "$1")
SOURCE=$2
KILLS=${3:-3}
EPOCHS=${CPRFL_KILL_EPOCHS:-3}
FASHION_MNIST=/usr/share/datasets/fashion-mnist

if ! command -v jq > /dev/null; then
  echo "kill-resume: needs jq to read metrics.jsonl and the checkpoints' headers; install it (apt-get install jq," \
       "or scripts/setup.sh)" >&2
  exit 1
fi
for file in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz t10k-images-idx3-ubyte.gz t10k-labels-idx1-ubyte.gz; do
  if [ ! -f "$FASHION_MNIST/$file" ]; then
    echo "kill-resume: SKIPPED: needs Fashion-MNIST ($FASHION_MNIST/$file is missing); install the Debian package" \
         "dataset-fashion-mnist (scripts/setup.sh does)"
    exit 77
  fi
done
((KILLS >= 1 && EPOCHS >= 1)) || { echo "kill-resume: KILLS and CPRFL_KILL_EPOCHS must be at least 1" >&2; exit 1; }

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$SOURCE"
unset CPRFL_FAULT_AT  # only the runs below that are meant to die get it

"$TOOL" make-fashion-lt --out "$WORK/data" > "$WORK/make.log" 2>&1 || { cat "$WORK/make.log" >&2; exit 1; }
# A slice of the benchmark at 32 px: a few seconds an epoch.
head -n 384 "$WORK/data/train.txt" > "$WORK/train.txt"
head -n 256 "$WORK/data/test.txt" > "$WORK/test.txt"
# Fixed threads: exact resume holds for the same thread count (train/trainer.h).
TRAIN=("$TOOL" --threads 2 train --quiet)
# An evaluation every epoch: the n-th "eval" fault point is then in the n-th epoch of a run.
SETTINGS=(--config configs/fashion_lt_ci.yaml --set data.root="$WORK/data" --set data.train_list="$WORK/train.txt"
          --set data.test_list="$WORK/test.txt" --set data.labels="$WORK/data/labels.txt" --set data.image_size=32
          --set optim.epochs="$EPOCHS" --set train.eval_every=1)

# A misspelt point must stop the run, not let it finish as if the kill were merely missed.
status=0
CPRFL_FAULT_AT=stpe:1 "${TRAIN[@]}" "${SETTINGS[@]}" --set train.out_dir="$WORK/typo" > "$WORK/typo.log" 2>&1 || status=$?
if ((status != 2)) || ! grep -q "CPRFL_FAULT_AT=stpe:1: unknown fault point" "$WORK/typo.log"; then
  echo "kill-resume: CPRFL_FAULT_AT=stpe:1 was not refused (status $status):" >&2
  cat "$WORK/typo.log" >&2
  exit 1
fi

# The uninterrupted run.
start=$SECONDS
"${TRAIN[@]}" "${SETTINGS[@]}" --set train.out_dir="$WORK/reference" > /dev/null
STEPS=$(jq -s '.[0].step' "$WORK/reference/metrics.jsonl")  # training steps per epoch
reference_epochs=$(jq -s 'length' "$WORK/reference/metrics.jsonl")
evaluated=$(jq -s 'map(select(has("test"))) | length' "$WORK/reference/metrics.jsonl")
((reference_epochs == EPOCHS && evaluated == EPOCHS && STEPS >= 1)) || {
  echo "kill-resume: the reference run logged $reference_epochs epochs ($evaluated evaluated, $STEPS steps each)," \
       "expected $EPOCHS, each evaluated" >&2
  exit 1
}
echo "kill-resume: reference run $((SECONDS - start))s ($EPOCHS epochs of $STEPS steps)"
REFERENCE_SIZE=$(stat -c %s "$WORK/reference/last.cprfl")

RUN="$WORK/killed"
LOG="$WORK/run.log"
shopt -s nullglob
# The JSON header of a .cprfl file (layout: io/tensor_file.h).
header_length() { od -An -t u8 -j 12 -N 8 "$1" | tr -d ' '; }
header() { head -c "$((20 + $(header_length "$1")))" "$1" | tail -c +21; }  # (no SIGPIPE: head reads what it needs)
epochs_logged() { if [ -f "$RUN/metrics.jsonl" ]; then wc -l < "$RUN/metrics.jsonl"; else echo 0; fi; }
epochs_checkpointed() { if [ -f "$RUN/last.cprfl" ]; then header "$RUN/last.cprfl" | jq '.meta.trainer.epochs_done'; else echo 0; fi; }
# Runs the training (resuming when there is a checkpoint) with the given environment.
train_run() {
  if [ -f "$RUN/last.cprfl" ]; then
    env "$@" "${TRAIN[@]}" --resume "$RUN" > "$LOG" 2>&1
  else
    env "$@" "${TRAIN[@]}" "${SETTINGS[@]}" --set train.out_dir="$RUN" > "$LOG" 2>&1
  fi
}
fail() { echo "kill-resume: $*" >&2; echo "--- its log:" >&2; cat "$LOG" >&2; exit 1; }

points=(step eval checkpoint_write)
stale=()  # the temporary a killed checkpoint write left: the next run must remove it
for ((i = 0; i < KILLS; ++i)); do
  point=${points[i % 3]}
  target=$((i * EPOCHS / KILLS))  # 0-based epoch the kill lands in
  done_before=$(epochs_checkpointed)
  ((target >= done_before)) || fail "kill $((i + 1)) aims at epoch $((target + 1)), but epoch $done_before is checkpointed"
  # The n-th arrival of this process at the point: it trains epochs done_before, done_before+1, ...
  case $point in
    step)
      within=$((1 + (STEPS / 2 + i) % STEPS))  # which step of the epoch
      n=$(((target - done_before) * STEPS + within))
      where="step $within of $STEPS" ;;
    eval) n=$((target - done_before + 1)); where="evaluation" ;;
    checkpoint_write) n=$((target - done_before + 1)); where="checkpoint write" ;;
  esac
  status=0
  train_run CPRFL_FAULT_AT="$point:$n" || status=$?
  what="kill $((i + 1))/$KILLS (CPRFL_FAULT_AT=$point:$n, epoch $((target + 1)), $where)"
  ((status == 137)) || fail "$what did not land: exit status $status, expected 137 (SIGKILL)"
  grep -q "CPRFL_FAULT_AT=$point:$n: killing this process at fault point $point" "$LOG" ||
    fail "$what: the run died by SIGKILL but not at its fault point"
  # Whatever the point, the last checkpoint and the log are those of the epoch before.
  ((${#stale[@]} == 0)) || [ ! -e "${stale[0]}" ] || fail "$what: the run did not remove ${stale[0]}"
  stale=()
  [ "$(epochs_checkpointed)" -eq "$target" ] || fail "$what: the checkpoint holds $(epochs_checkpointed) epochs, expected $target"
  [ "$(epochs_logged)" -eq "$target" ] || fail "$what: metrics.jsonl holds $(epochs_logged) epochs, expected $target"
  temporaries=("$RUN"/.last.cprfl.tmp*)
  if [ "$point" = checkpoint_write ]; then
    ((${#temporaries[@]} == 1)) || fail "$what: ${#temporaries[@]} temporary checkpoint files, expected 1"
    size=$(stat -c %s "${temporaries[0]}")
    ((size > 0 && size < REFERENCE_SIZE)) ||
      fail "$what: the temporary ${temporaries[0]} holds $size bytes, expected part of a checkpoint (< $REFERENCE_SIZE)"
    stale=("${temporaries[0]}")
    what="$what: ${size}-byte temporary left"
  else
    ((${#temporaries[@]} == 0)) || fail "$what: temporary checkpoint files left: ${temporaries[*]}"
  fi
  echo "kill-resume: $what; checkpoint after epoch $target"
done

# Finish the run.
train_run || fail "the final run failed"
((${#stale[@]} == 0)) || [ ! -e "${stale[0]}" ] || fail "the final run did not remove ${stale[0]}"
temporaries=("$RUN"/.*.tmp*)
((${#temporaries[@]} == 0)) || fail "temporary files left: ${temporaries[*]}"

# Equal metrics (timings aside) and equal weights: the tensor bytes of the two checkpoints
# (everything after the JSON header, before the CRC).
strip_timing='del(.train_seconds, .epoch_seconds, .images_per_second)'
diff <(jq -c "$strip_timing" "$WORK/reference/metrics.jsonl") <(jq -c "$strip_timing" "$RUN/metrics.jsonl") \
  || { echo "kill-resume: metrics.jsonl differs from the uninterrupted run" >&2; exit 1; }
# "name offset nbytes" of each tensor, offsets from the file's start.
tensor_table() {
  local start=$(( (20 + $(header_length "$1") + 63) / 64 * 64 ))
  header "$1" | jq -r --argjson start "$start" '.tensors[] | "\(.name) \(.offset + $start) \(.nbytes)"'
}
mapfile -t reference_tensors < <(tensor_table "$WORK/reference/last.cprfl")
declare -A resumed_offset
while read -r name offset nbytes; do resumed_offset[$name]="$offset $nbytes"; done < <(tensor_table "$RUN/last.cprfl")
compared=0
for entry in "${reference_tensors[@]}"; do
  read -r name offset nbytes <<< "$entry"
  [ "$name" = "trainer/optimizer" ] && continue
  read -r other_offset other_nbytes <<< "${resumed_offset[$name]:-x 0}"
  if [ "$other_offset" = x ] || [ "$other_nbytes" != "$nbytes" ] ||
     ! cmp -s -n "$nbytes" -i "$offset:$other_offset" "$WORK/reference/last.cprfl" "$RUN/last.cprfl"; then
    echo "kill-resume: tensor $name differs from the uninterrupted run" >&2
    exit 1
  fi
  compared=$((compared + 1))
done
((compared > 10)) || { echo "kill-resume: only $compared tensors compared" >&2; exit 1; }
echo "kill-resume: all $KILLS kills landed at their fault points; final metrics and all $compared tensors equal" \
     "the uninterrupted run's ($((SECONDS - start))s)"
