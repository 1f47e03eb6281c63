#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan + libFuzzer, in build-sanitize/ — the same
# build `scripts/test.sh --sanitize` uses) and runs each for SECONDS (default 30) on its seed
# corpus tests/fuzz/corpus/<target>/. Prints executions and findings per target; exits 1 if
# any target crashed, hung, leaked, or allocated beyond the limits.
#
#   tests/fuzz/run.sh [SECONDS] [TARGET ...]     e.g. tests/fuzz/run.sh 600 npy image
#
# Environment: CPRFL_JOBS targets at a time (default: nproc), CPRFL_FUZZ_BUILD build folder,
# CPRFL_FUZZ_OUT where logs, new corpus entries and crash inputs go (default: a temp folder,
# kept when something was found).
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_EACH=${1:-30}
shift || true
BUILD=${CPRFL_FUZZ_BUILD:-build-sanitize}
JOBS=${CPRFL_JOBS:-$(nproc)}

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  CC=clang CXX=clang++ cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCPRFL_FUZZ=ON \
    -DCPRFL_BUILD_BENCH=OFF >/dev/null
fi
cmake --build "$BUILD" -j "$JOBS" --target fuzz_targets >/dev/null

TARGETS=("$@")
if ((${#TARGETS[@]} == 0)); then
  for source in tests/fuzz/fuzz_*.cpp; do
    name=$(basename "$source" .cpp)
    TARGETS+=("${name#fuzz_}")
  done
fi

OUT=${CPRFL_FUZZ_OUT:-$(mktemp -d /tmp/cprfl-fuzz.XXXXXX)}
mkdir -p "$OUT"

# One target: a scratch corpus (new inputs go there, the committed seeds stay as they are),
# inputs up to twice the largest seed (at least 4 KiB), 2 GiB of memory, 20 s per input.
fuzz_target() {
  local target=$1 seeds=tests/fuzz/corpus/$1
  local largest
  largest=$(find "$seeds" -type f -printf '%s\n' 2>/dev/null | sort -n | tail -1)
  local max_len=$(( ${largest:-0} * 2 > 4096 ? ${largest:-0} * 2 : 4096 ))
  mkdir -p "$OUT/$target/corpus" "$OUT/$target/crashes"
  TMPDIR="$OUT/$target" "$BUILD/fuzz/fuzz_$target" "$OUT/$target/corpus" "$seeds" \
    -max_total_time="$SECONDS_EACH" -max_len="$max_len" -rss_limit_mb=2048 -timeout=20 \
    -close_fd_mask=3 -print_final_stats=1 -artifact_prefix="$OUT/$target/crashes/" \
    > "$OUT/$target.log" 2>&1 || true
}

running=0
for target in "${TARGETS[@]}"; do
  [ -x "$BUILD/fuzz/fuzz_$target" ] || { echo "fuzz: no target fuzz_$target" >&2; exit 2; }
  fuzz_target "$target" &
  running=$((running + 1))
  if ((running >= JOBS)); then wait -n; running=$((running - 1)); fi
done
wait

failed=0
printf '%-14s %14s %8s  %s\n' target executions findings corpus
for target in "${TARGETS[@]}"; do
  executions=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$OUT/$target.log" | tail -1 | grep -o '[0-9]*$' || true)
  findings=$(find "$OUT/$target/crashes" -type f | wc -l)
  corpus=$(find "$OUT/$target/corpus" -type f | wc -l)
  if [ -z "$executions" ] || ((findings > 0)); then failed=1; fi
  printf '%-14s %14s %8s  %s\n' "$target" "${executions:-none}" "$findings" "$corpus"
done
if ((failed)); then
  echo "fuzz: FAILED — logs and crash inputs in $OUT" >&2
  grep -h -m3 -E 'ERROR|SUMMARY|invariant|terminate|uncaught' "$OUT"/*.log >&2 || true
  exit 1
fi
[ -n "${CPRFL_FUZZ_OUT:-}" ] || rm -rf "$OUT"
echo "fuzz: every target ran ${SECONDS_EACH}s without findings"
