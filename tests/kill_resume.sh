#!/usr/bin/env bash
# Kill-and-resume: trains a small Fashion-LT run uninterrupted, then the same run again while
# killing it with SIGKILL KILLS times — during a training step, during evaluation, during a
# checkpoint write, in turn — and continuing it each time with `cprfl train --resume DIR`
# (or starting it again when it died before its first checkpoint). The final metrics.jsonl
# (timing fields aside) and the weights in last.cprfl must equal the uninterrupted run's.
#
#   tests/kill_resume.sh TOOL SOURCE_DIR [KILLS]     (CTest runs KILLS=3)
#   CPRFL_KILL_EPOCHS=20 tests/kill_resume.sh build/cprfl . 10   (the 10-kill run: more epochs than kills)
set -euo pipefail
TOOL=$(realpath "$1")
SOURCE=$2
KILLS=${3:-3}
EPOCHS=${CPRFL_KILL_EPOCHS:-3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$SOURCE"

"$TOOL" make-fashion-lt --out "$WORK/data" > "$WORK/make.log" 2>&1 || { cat "$WORK/make.log" >&2; exit 1; }
# A slice of the benchmark at 32 px: a few seconds an epoch.
head -n 384 "$WORK/data/train.txt" > "$WORK/train.txt"
head -n 256 "$WORK/data/test.txt" > "$WORK/test.txt"
# Fixed threads: exact resume holds for the same thread count (train/trainer.h).
TRAIN=("$TOOL" --threads 2 train --quiet)
SETTINGS=(--config configs/fashion_lt_ci.yaml --set data.root="$WORK/data" --set data.train_list="$WORK/train.txt"
          --set data.test_list="$WORK/test.txt" --set data.labels="$WORK/data/labels.txt" --set data.image_size=32 --set optim.epochs="$EPOCHS")

now() { date +%s.%N; }
# Seconds as a float expression, evaluated with awk.
calc() { awk "BEGIN { printf \"%.3f\", $1 }"; }

# The uninterrupted run; its per-epoch timings place the kills.
start=$(now)
"${TRAIN[@]}" "${SETTINGS[@]}" --set train.out_dir="$WORK/reference" > /dev/null
total=$(calc "$(now) - $start")
mapfile -t TRAIN_S < <(jq -r '.train_seconds' "$WORK/reference/metrics.jsonl")
mapfile -t EPOCH_S < <(jq -r '.epoch_seconds' "$WORK/reference/metrics.jsonl")
epochs_sum=$(printf '%s\n' "${EPOCH_S[@]}" | awk '{ s += $1 } END { printf "%.3f", s }')
startup=$(calc "$total - $epochs_sum")
echo "kill-resume: reference run ${total}s (startup ${startup}s, $EPOCHS epochs)"

RUN="$WORK/killed"
launch() {
  if [ -f "$RUN/last.cprfl" ]; then
    "${TRAIN[@]}" --resume "$RUN" > "$WORK/run.log" 2>&1 &
  else
    "${TRAIN[@]}" "${SETTINGS[@]}" --set train.out_dir="$RUN" > "$WORK/run.log" 2>&1 &
  fi
  PID=$!
}
# Builtins only (no fork), so the watch below is fast enough to catch a write in progress.
stale_temporaries() { local files=("$RUN"/.last.cprfl.tmp*); echo "${#files[@]}"; }
shopt -s nullglob

phases=(step eval checkpoint)
survived=0
missed=0
mid_write=0
for ((i = 0; i < KILLS; ++i)); do
  phase=${phases[i % 3]}
  # Kills are spread over the epochs (never earlier than the last one), so the run advances.
  target=$(( i * EPOCHS / KILLS ))               # 0-based epoch the kill aims at
  done_before=0
  [ -f "$RUN/metrics.jsonl" ] && done_before=$(wc -l < "$RUN/metrics.jsonl")
  ((target < done_before)) && target=$done_before
  ((target >= EPOCHS)) && break
  # Where in the target epoch, by the reference run's timings of that epoch.
  case $phase in
    step) delay=$(calc "(0.1 + 0.8 * $RANDOM / 32767) * ${TRAIN_S[target]}") ;;
    eval) delay=$(calc "${TRAIN_S[target]} + (0.1 + 0.6 * $RANDOM / 32767) * (${EPOCH_S[target]} - ${TRAIN_S[target]})") ;;
    checkpoint) delay=$(calc "0.9 * ${TRAIN_S[target]}") ;;
  esac
  launch
  # The epoch starts after the start-up, or when the run logs the epoch before it (the log is
  # the clock: other load on the machine changes the speed from the reference run's).
  if ((target == done_before)); then
    sleep "$startup"
  else
    while kill -0 "$PID" 2>/dev/null && (( $(cat "$RUN/metrics.jsonl" 2>/dev/null | wc -l) < target )); do sleep 0.02; done
  fi
  sleep "$delay"
  if [ "$phase" = checkpoint ]; then
    # Wait for the checkpoint's temporary file to appear, then kill at once.
    temporaries=()
    while ((${#temporaries[@]} == 0)) && kill -0 "$PID" 2>/dev/null; do temporaries=("$RUN"/.last.cprfl.tmp*); done
  fi
  kill -9 "$PID" 2>/dev/null || true
  status=0
  wait "$PID" 2>/dev/null || status=$?
  if ((status == 0)); then
    echo "kill-resume: kill $((i + 1))/$KILLS missed: the run finished first"
    missed=$((missed + 1))
    continue
  elif ((status != 137)); then
    echo "kill-resume: the run failed (status $status):" >&2
    cat "$WORK/run.log" >&2
    exit 1
  fi
  # A kill during the write leaves the temporary file (the next run removes it; here it is
  # removed at once so that the next checkpoint-phase kill can watch for a new one).
  if (( $(stale_temporaries) > 0 )); then
    mid_write=$((mid_write + 1))
    phase="checkpoint (mid-write)"
    rm -f "$RUN"/.last.cprfl.tmp*
  fi
  epochs_now=0
  [ -f "$RUN/metrics.jsonl" ] && epochs_now=$(wc -l < "$RUN/metrics.jsonl")
  echo "kill-resume: kill $((i + 1))/$KILLS aimed at epoch $((target + 1)) $phase, ${delay}s into it; checkpoint after epoch $epochs_now"
  survived=$((survived + 1))
done

# Finish the run.
launch
wait "$PID" || { echo "kill-resume: the final run failed:" >&2; cat "$WORK/run.log" >&2; exit 1; }

# Equal metrics (timings aside) and equal weights: the tensor bytes of the two checkpoints
# (everything after the JSON header, before the CRC).
strip_timing='del(.train_seconds, .epoch_seconds, .images_per_second)'
diff <(jq -c "$strip_timing" "$WORK/reference/metrics.jsonl") <(jq -c "$strip_timing" "$RUN/metrics.jsonl") \
  || { echo "kill-resume: metrics.jsonl differs from the uninterrupted run" >&2; exit 1; }
header_length() { od -An -t u8 -j 12 -N 8 "$1" | tr -d ' '; }
# "name offset nbytes" of each tensor, offsets from the file's start.
tensor_table() {
  local length start
  length=$(header_length "$1")
  start=$(( (20 + length + 63) / 64 * 64 ))
  tail -c +21 "$1" | head -c "$length" | jq -r --argjson start "$start" '.tensors[] | "\(.name) \(.offset + $start) \(.nbytes)"'
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
((survived > 0)) || { echo "kill-resume: no kill landed" >&2; exit 1; }
echo "kill-resume: survived $survived kill(s) ($mid_write during a checkpoint write, $missed missed);" \
     "final metrics and all $compared tensors equal the uninterrupted run's"
