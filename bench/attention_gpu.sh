#!/usr/bin/env bash
# One command on a GPU node for the attention kernels: configure a Release build with CUDA (and cuDNN
# when found), build the CUDA tests, the op harness and coil_attention_bench, run the attention tests
# (both cuDNN backward graph variants), the op harness's attention cases on CUDA, then the benchmark
# and PyTorch's SDPA in the same shapes; prints the merged table last.
#   bash bench/attention_gpu.sh            # logs and CSV in build-attn-gpu/logs (the main ones also to $OUT)
#   BUILD_DIR=b JOBS=8 ITERS=20 bash bench/attention_gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-attn-gpu}
JOBS=${JOBS:-$(nproc)}
ITERS=${ITERS:-20}
LOG=$BUILD_DIR/logs
mkdir -p "$LOG"
export PATH=/usr/local/cuda/bin:$PATH PYTHONUNBUFFERED=1
echo "== device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)"
echo "== cuDNN libraries: $(ls /usr/local/cuda/lib*/libcudnn.so* /usr/lib/x86_64-linux-gnu/libcudnn.so* 2>/dev/null | tr '\n' ' ')"

generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
start=$(date +%s)
cmake -S . -B "$BUILD_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DCOIL_CUDA=ON \
  -DCMAKE_POLICY_VERSION_MINIMUM=3.5 >"$LOG/configure.log" 2>&1 || { tail -40 "$LOG/configure.log"; exit 2; }
# The main logs go to $OUT too (when set: the device tool's folder that comes back).
keep() { [ -n "${OUT:-}" ] && cp "$@" "$OUT/" 2>/dev/null; return 0; }
grep -E "cuDNN|CUDA backend" "$LOG/configure.log"
cmake --build "$BUILD_DIR" -j "$JOBS" --target test_cuda test_core coil_attention_bench >"$LOG/build.log" 2>&1 ||
  { grep -E -A5 "error|FAILED" "$LOG/build.log" | head -60; keep "$LOG/build.log"; exit 3; }
echo "== built in $(($(date +%s) - start)) s"

rc=0
for variant in 1 2; do
  echo "== attention tests, cuDNN backward graph variant $variant"
  COIL_CUDNN_VERBOSE=1 COIL_CUDNN_SDPA_BWD_VARIANT=$variant "$BUILD_DIR/tests/test_cuda" \
    --gtest_filter='CudaAttention*' 2>&1 | tee "$LOG/test_attention_v$variant.log" |
    grep -E "^\[attention|^\[coil cudnn|OK \]|FAILED|Failure|error|Expected|Which is|naive"
  [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
done
echo "== op harness, attention cases (every backend present)"
"$BUILD_DIR/tests/test_core" --gtest_filter='Harness/*attention*' 2>&1 | tee "$LOG/test_harness.log" | tail -4
[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1

echo "== coil_attention_bench (the cuDNN CMake found)"
"$BUILD_DIR/bench/coil_attention_bench" --iters "$ITERS" --csv "$LOG/coil_attention.csv" 2>&1 |
  tee "$LOG/bench_coil.log"
csv="$LOG/coil_attention.csv"
# PyTorch loads the cuDNN of its nvidia-cudnn wheel; a second build linked to that one makes the ratio
# compare kernels of one cuDNN version.
wheel=$(python3 -c "import nvidia.cudnn as m; print(list(m.__path__)[0])" 2>/dev/null)
if [ -n "$wheel" ]; then
  cmake -S . -B "$BUILD_DIR-wheel" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DCOIL_CUDA=ON -DCOIL_TESTS=OFF \
    -DCMAKE_POLICY_VERSION_MINIMUM=3.5 -DCUDNN_ROOT="$wheel" >"$LOG/configure_wheel.log" 2>&1 &&
    cmake --build "$BUILD_DIR-wheel" -j "$JOBS" --target coil_attention_bench >"$LOG/build_wheel.log" 2>&1 &&
    { grep -E "cuDNN" "$LOG/configure_wheel.log"
      echo "== coil_attention_bench, linked to PyTorch's cuDNN"
      "$BUILD_DIR-wheel/bench/coil_attention_bench" --iters "$ITERS" --csv "$LOG/coil_attention_wheel.csv" 2>&1 |
        tee "$LOG/bench_coil_wheel.log"
      csv="$LOG/coil_attention_wheel.csv"; }
fi
if python3 -c "import torch" 2>/dev/null; then
  echo "== PyTorch SDPA in the same shapes (coil columns from $(basename "$csv"))"
  python3 bench/attention_torch.py --iters "$ITERS" --coil "$csv" 2>&1 | tee "$LOG/bench_torch.log"
else
  echo "== PyTorch not importable: no ratio"
fi
keep "$LOG"/test_attention_v*.log "$LOG/test_harness.log" "$LOG/bench_coil.log" "$LOG/bench_coil_wheel.log" \
  "$LOG/coil_attention.csv" "$LOG/bench_torch.log"
echo "== attention_gpu: tests $([ $rc -eq 0 ] && echo passed || echo FAILED), total $(($(date +%s) - start)) s"
exit $rc
