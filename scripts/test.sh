#!/usr/bin/env bash
# Sets up (installs packages, builds) and runs the whole test suite under CTest.
#   scripts/test.sh              Release build in build/ on Debian's LibTorch 1.13 (the README's
#                                test command)
#   scripts/test.sh --torch pip  the same suite on LibTorch 2.x from the PyPI wheel, in
#                                build-torch2/ (scripts/setup.sh --torch pip); --torch DIR for an
#                                unpacked LibTorch zip, in build-libtorch/
#   scripts/test.sh --sanitize   the suite built with clang under AddressSanitizer +
#                                UndefinedBehaviorSanitizer in build-sanitize/ (which also
#                                holds the fuzz targets: tests/fuzz/run.sh uses it)
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${CPRFL_JOBS:-$(nproc)}
case "${1:-}" in
  --sanitize)
    bash scripts/setup.sh
    CC=clang CXX=clang++ cmake -S . -B build-sanitize -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCPRFL_FUZZ=ON \
      -DCPRFL_BUILD_BENCH=OFF >/dev/null
    cmake --build build-sanitize -j "$JOBS"
    ctest --test-dir build-sanitize --output-on-failure -j "$JOBS" ;;
  --torch|--torch=*)
    torch=${2:-${1#--torch=}}
    [ "$torch" != --torch ] || { echo "test: --torch needs pip or a LibTorch folder" >&2; exit 2; }
    bash scripts/setup.sh --torch "$torch"
    if [ "$torch" = pip ]; then build=build-torch2; else build=build-libtorch; fi
    ctest --test-dir "$build" --output-on-failure -j "$JOBS" ;;
  "")
    bash scripts/setup.sh
    ctest --test-dir build --output-on-failure -j "$JOBS" ;;
  *) echo "test: unknown argument '$1' (use --sanitize or --torch pip|DIR)" >&2; exit 2 ;;
esac
