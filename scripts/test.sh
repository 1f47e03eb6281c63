#!/usr/bin/env bash
# Sets up (installs packages, builds) and runs the whole test suite under CTest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ctest --test-dir build --output-on-failure -j "${CPRFL_JOBS:-$(nproc)}"
