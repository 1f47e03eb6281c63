#!/usr/bin/env bash
# Sets up (installs packages, builds) and runs the whole test suite under CTest.
#   scripts/test.sh              Release build in build/ (the README's test command)
#   scripts/test.sh --sanitize   the same suite built with clang under AddressSanitizer +
#                                UndefinedBehaviorSanitizer in build-sanitize/ (which also
#                                holds the fuzz targets: tests/fuzz/run.sh uses it)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
JOBS=${CPRFL_JOBS:-$(nproc)}
if [ "${1:-}" = "--sanitize" ]; then
  CC=clang CXX=clang++ cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCPRFL_FUZZ=ON \
    -DCPRFL_BUILD_BENCH=OFF >/dev/null
  cmake --build build-sanitize -j "$JOBS"
  ctest --test-dir build-sanitize --output-on-failure -j "$JOBS"
else
  ctest --test-dir build --output-on-failure -j "$JOBS"
fi
