#!/usr/bin/env bash
# Installs every Debian package cprfl needs (idempotent: skips what is present) and builds
# it in Release. The tool ends up at build/cprfl. Run from anywhere; needs root or sudo
# only when a package is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake pkg-config git
  libtorch-dev libopenblas0-openmp            # tensors/autograd; a fast BLAS for LibTorch
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev libjpeg-dev
  libcli11-dev libyaml-cpp-dev nlohmann-json3-dev zlib1g-dev libutf8proc-dev
  libgtest-dev libbenchmark-dev
  clang libclang-rt-14-dev jq                # sanitizer and fuzz builds (libFuzzer); kill-and-resume test
  dataset-fashion-mnist                       # the images Fashion-LT is built from
)

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

JOBS=${CPRFL_JOBS:-$(nproc)}
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$JOBS"
echo "setup: built build/cprfl"
