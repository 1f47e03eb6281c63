#!/usr/bin/env bash
# Installs what cprfl needs (idempotent: skips what is present) and builds it in Release.
#   scripts/setup.sh                 Debian's LibTorch 1.13 (CPU) → build/cprfl  (the default)
#   scripts/setup.sh --torch pip     LibTorch 2.x from the PyPI `torch` wheel (CUDA-enabled; runs
#                                    on the CPU where there is no GPU), installed into a
#                                    project-local venv .venv-torch2 → build-torch2/cprfl
#   scripts/setup.sh --torch DIR     a LibTorch unpacked from the PyTorch site's zip (CPU or
#                                    CUDA) in DIR → build-libtorch/cprfl
# CPRFL_TORCH_VERSION pins the wheel (default below: the version this project is tested on);
# CPRFL_TORCH_VENV puts the venv elsewhere. Needs root or sudo only when a package is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

TORCH=debian
while (($#)); do
  case "$1" in
    --torch) TORCH=${2:?"--torch needs debian, pip or a LibTorch folder"}; shift 2 ;;
    --torch=*) TORCH=${1#--torch=}; shift ;;
    *) echo "setup: unknown argument '$1' (use --torch debian|pip|DIR)" >&2; exit 2 ;;
  esac
done
TORCH_VERSION=${CPRFL_TORCH_VERSION:-2.15.0}

PACKAGES=(
  build-essential cmake pkg-config git
  libopenblas0-openmp                         # a fast BLAS for Debian's LibTorch
  libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev libjpeg-dev
  libcli11-dev libyaml-cpp-dev nlohmann-json3-dev zlib1g-dev libutf8proc-dev
  libgtest-dev libbenchmark-dev
  libgloo-dev                                 # headers of c10d's Gloo process group (data-parallel training)
  clang libclang-rt-14-dev jq                # sanitizer and fuzz builds (libFuzzer); kill-and-resume test
  dataset-fashion-mnist                       # the images Fashion-LT is built from
)
case "$TORCH" in
  debian) PACKAGES+=(libtorch-dev) ;;         # tensors/autograd: LibTorch 1.13, CPU
  pip) PACKAGES+=(python3 python3-venv) ;;
esac

missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
# A python3 outside Debian's packages (pyenv, a module system) with its own venv will do.
if [ "$TORCH" = pip ] && python3 -m venv --help >/dev/null 2>&1; then
  kept=(); for p in "${missing[@]}"; do [[ "$p" = python3 || "$p" = python3-venv ]] || kept+=("$p"); done
  missing=("${kept[@]}")
fi
if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

JOBS=${CPRFL_JOBS:-$(nproc)}
case "$TORCH" in
  debian)
    BUILD=build
    PREFIX=() ;;
  pip)
    BUILD=build-torch2
    VENV=${CPRFL_TORCH_VENV:-.venv-torch2}
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
      echo "setup: installing torch==$TORCH_VERSION from PyPI into $VENV (about 3 GB with its CUDA libraries)"
      "$VENV/bin/pip" install --quiet --progress-bar off "torch==$TORCH_VERSION"
    fi
    TORCH_ROOT=$("$VENV/bin/python" -c 'import os, torch; print(os.path.dirname(torch.__file__))' 2>/dev/null)
    # The torch root too, so that its lib/ is searched before the system's (a Debian LibTorch
    # installed beside it would otherwise be found first).
    PREFIX=("-DCMAKE_PREFIX_PATH=$TORCH_ROOT;$TORCH_ROOT/share/cmake") ;;
  *)
    [ -f "$TORCH/share/cmake/Torch/TorchConfig.cmake" ] ||
      { echo "setup: $TORCH is not an unpacked LibTorch (no share/cmake/Torch/TorchConfig.cmake in it)" >&2; exit 2; }
    BUILD=build-libtorch
    TORCH_ROOT=$(cd "$TORCH" && pwd)
    PREFIX=("-DCMAKE_PREFIX_PATH=$TORCH_ROOT;$TORCH_ROOT/share/cmake") ;;
esac

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release "${PREFIX[@]}" >/dev/null
cmake --build "$BUILD" -j "$JOBS"
echo "setup: built $BUILD/cprfl ($("$BUILD/cprfl" --version | head -1))"
