#!/usr/bin/env bash
# One command on a GPU node for the linear-attention kernels (ops LinAttn / LinAttnBackward): configure
# a Release build with CUDA, build the CUDA tests, the op harness and coil_linattn_bench, run the
# linattn CUDA tests and the op harness's linattn cases (every backend present), then the benchmark
# (the 2Mamba and 2Mamba-E ops beside coil's attention in one run); prints the table last.
#   bash bench/linattn_gpu.sh              # logs in build-linattn-gpu/logs (the main ones also to $OUT)
#   BUILD_DIR=b JOBS=8 ITERS=20 ARCHS=90a LENGTHS=1024,2048 bash bench/linattn_gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-linattn-gpu}
JOBS=${JOBS:-$(nproc)}
ITERS=${ITERS:-20}
ARCHS=${ARCHS:-90a}  # one architecture halves the CUDA compile time; the default build adds sm_90 PTX
LENGTHS=${LENGTHS:-1024,2048,4096,8192,16384,32768}
LOG=$BUILD_DIR/logs
mkdir -p "$LOG"
export PATH=/usr/local/cuda/bin:$PATH
keep() { [ -n "${OUT:-}" ] && cp "$@" "$OUT/" 2>/dev/null; return 0; }
echo "== device: $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n 1)"

generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
start=$(date +%s)
cmake -S . -B "$BUILD_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DCOIL_CUDA=ON \
  -DCOIL_CUDA_ARCHS="$ARCHS" -DCMAKE_POLICY_VERSION_MINIMUM=3.5 >"$LOG/configure.log" 2>&1 ||
  { tail -40 "$LOG/configure.log"; exit 2; }
cmake --build "$BUILD_DIR" -j "$JOBS" --target test_cuda test_core coil_linattn_bench >"$LOG/build.log" 2>&1 ||
  { grep -E -A5 "error|FAILED" "$LOG/build.log" | head -60; keep "$LOG/build.log"; exit 3; }
echo "== built in $(($(date +%s) - start)) s"

rc=0
echo "== linattn CUDA tests"
"$BUILD_DIR/tests/test_cuda" --gtest_filter='CudaLinAttn*' 2>&1 | tee "$LOG/test_linattn.log" |
  grep -E "OK \]|FAILED|Failure|Expected|Which is|error|naive" | tail -80
[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
echo "== op harness, linattn cases (every backend present)"
"$BUILD_DIR/tests/test_core" --gtest_filter='*linattn*:*LinAttn*:OpHarnessCoverage*' 2>&1 | tee "$LOG/test_harness.log" |
  grep -E "FAILED|Failure|PASSED|tests ran" | tail -20
[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1

echo "== coil_linattn_bench"
"$BUILD_DIR/bench/coil_linattn_bench" --iters "$ITERS" --lengths "$LENGTHS" 2>&1 | tee "$LOG/bench.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
keep "$LOG/test_linattn.log" "$LOG/test_harness.log" "$LOG/bench.log"
echo "== linattn_gpu: tests $([ $rc -eq 0 ] && echo passed || echo FAILED), total $(($(date +%s) - start)) s"
exit $rc
