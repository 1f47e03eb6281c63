#!/usr/bin/env bash
# The CUDA check, in one go, for a machine with an NVIDIA GPU, a PyTorch 2.x with CUDA for
# python3, and no network (nothing is downloaded): builds cprfl against that PyTorch's LibTorch,
# runs the device tests (tests/test_cuda.cpp: they skip where no GPU is seen, so here they must
# run), benchmarks the official model with build-gpu/bench/bench_gpu (CPU↔GPU agreement, batch-1
# latency, batch-16 throughput and the training step, float32 and bf16) and the same model run
# the authors' way in eager PyTorch (bench/gpu_peer.py), and writes bench/results/gpu.json with
# the ratios the README's CUDA table reports.
#   scripts/gpu_check.sh [--quick]     --quick: fewer repetitions
#   scripts/gpu_check.sh --dry-run     every step on the CPU, small (configuration A, 64 px peer),
#                                      results under /tmp: checks the script itself where there
#                                      is no GPU (CPRFL_GPU_CHECK_BUILD=build-torch2 reuses a build)
# Needs on that machine: cmake, a C++17 compiler, and the -dev files of OpenCV (core, imgproc,
# imgcodecs), CLI11, yaml-cpp, nlohmann-json, libjpeg, zlib, utf8proc and GoogleTest; a missing
# one is named by CMake before anything is built.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=20 STEPS=10 DEVICE=cuda CONFIG=B PEER_SIZE=448 OUT=bench/results DRY=0
case "${1:-}" in
  --quick) REPS=5 STEPS=3 ;;
  --dry-run) REPS=5 STEPS=2 DEVICE=cpu CONFIG=A PEER_SIZE=64 OUT=$(mktemp -d) DRY=1 ;;
  "") ;;
  *) echo "gpu_check: unknown argument '$1' (use --quick or --dry-run)" >&2; exit 2 ;;
esac
BUILD=${CPRFL_GPU_CHECK_BUILD:-build-gpu}
start=$SECONDS
log() { echo "gpu_check [$((SECONDS - start)) s]: $*"; }

PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import torch' 2>/dev/null || { echo "gpu_check: $PYTHON has no torch" >&2; exit 2; }
TORCH_ROOT=$("$PYTHON" -c 'import os, torch; print(os.path.dirname(torch.__file__))')
log "torch $("$PYTHON" -c 'import torch; print(torch.__version__, "CUDA", torch.version.cuda, "GPUs", torch.cuda.device_count())')"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/gpu_check: GPU /'
[ "$DRY" = 1 ] || "$PYTHON" -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' ||
  { echo "gpu_check: PyTorch sees no CUDA GPU here; nothing to check (--dry-run runs the steps on the CPU)" >&2; exit 2; }

log "configuring $BUILD against $TORCH_ROOT"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=$TORCH_ROOT;$TORCH_ROOT/share/cmake" \
  -DTORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}" >"$OUT/gpu_configure.log" 2>&1 ||
  { tail -30 "$OUT/gpu_configure.log" >&2; echo "gpu_check: configure failed (full log: $OUT/gpu_configure.log)" >&2; exit 1; }
log "building (cprfl, cprfl_tests, bench_gpu)"
cmake --build "$BUILD" -j "$(nproc)" --target cprfl_tool cprfl_tests bench_gpu >"$OUT/gpu_build.log" 2>&1 ||
  { grep -m 20 -E "error|Error" "$OUT/gpu_build.log" >&2; echo "gpu_check: build failed (full log: $OUT/gpu_build.log)" >&2; exit 1; }
"$BUILD/cprfl" --version

log "device tests"
"$BUILD/tests/cprfl_tests" --gtest_filter='Cuda.*:DeviceNames.*' --gtest_brief=0 2>&1 | tee "$OUT/gpu_tests.log" | grep -E "^\[ +(OK|FAILED|SKIPPED) +\]|PASSED|FAILED" || true
if [ "$DRY" = 0 ] && grep -q "SKIPPED \]" "$OUT/gpu_tests.log"; then echo "gpu_check: device tests skipped on a GPU machine" >&2; exit 1; fi
if ! grep -q "\[  PASSED  \]" "$OUT/gpu_tests.log" || grep -q "\[  FAILED  \]" "$OUT/gpu_tests.log"; then
  echo "gpu_check: device tests failed ($OUT/gpu_tests.log)" >&2; exit 1
fi

log "bench_gpu (configuration $CONFIG on $DEVICE, float32 and bf16)"
"$BUILD/bench/bench_gpu" --device "$DEVICE" --config "$CONFIG" --reps "$REPS" --train-steps "$STEPS" \
  --out "$OUT/gpu_cprfl.json" >/dev/null
log "the authors' way in eager PyTorch (bench/gpu_peer.py)"
"$PYTHON" bench/gpu_peer.py --device "$DEVICE" --image-size "$PEER_SIZE" --reps "$REPS" --train-steps "$STEPS" \
  --out "$OUT/gpu_peer.json" >/dev/null

"$PYTHON" - "$OUT" <<'EOF'
import json, os, subprocess, sys
out = sys.argv[1]
ours, peer = (json.load(open(os.path.join(out, f))) for f in ("gpu_cprfl.json", "gpu_peer.json"))
try:
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True).stdout.strip()
except FileNotFoundError:
    gpu = "no GPU (dry run)"
ratio = lambda a, b: a["median_s"] / b["median_s"]
result = {
    "gpu": gpu, "cprfl": ours, "authors_way_pytorch": peer,
    "speedup": {
        "train_step_bf16": ratio(peer["train"]["bf16"], ours["train"]["bf16"]),
        "train_step_fp32": ratio(peer["train"]["fp32"], ours["train"]["fp32"]),
        "infer_batch1_fp32": ratio(peer["infer"]["fp32"]["batch1"], ours["infer"]["fp32"]["batch1"]),
        "infer_batch1_bf16": ratio(peer["infer"]["bf16"]["batch1"], ours["infer"]["bf16"]["batch1"]),
    },
    "targets": {"train_step_bf16": 1.5, "infer_batch1": 5.0, "fp32_relative_difference": 1e-3},
}
tmp = os.path.join(out, "gpu.json.tmp")
json.dump(result, open(tmp, "w"), indent=2)
os.replace(tmp, os.path.join(out, "gpu.json"))
ms = lambda s: f"{1000 * s['median_s']:.1f} ms"
print(f"\n| {gpu} | cprfl | authors' way (eager PyTorch) | speed-up |\n|---|---|---|---|")
for name, a, b in (("train step, batch 16, bf16", ours["train"]["bf16"], peer["train"]["bf16"]),
                   ("train step, batch 16, fp32", ours["train"]["fp32"], peer["train"]["fp32"]),
                   ("inference, batch 1, fp32", ours["infer"]["fp32"]["batch1"], peer["infer"]["fp32"]["batch1"]),
                   ("inference, batch 1, bf16", ours["infer"]["bf16"]["batch1"], peer["infer"]["bf16"]["batch1"])):
    print(f"| {name} | {ms(a)} | {ms(b)} | {b['median_s'] / a['median_s']:.2f}x |")
agreement = ours.get("agreement_with_cpu", {})
print(f"\nCPU vs GPU scores: fp32 {agreement.get('fp32_relative_difference')} (tolerance 1e-3), "
      f"bf16 {agreement.get('bf16_relative_difference')} (tolerance 5e-2)")
EOF
log "done: $OUT/gpu.json"
