#!/usr/bin/env bash
# Every mixer's kernels on one GPU in one call (issue 4's kernel benchmark): forward and forward+backward
# ms and TFLOP/s at H=16, D=64, 32K tokens per call, T = 1K .. 32K, each table from one process so the
# ratios inside it are same-run ratios:
#   softmax attention (cuDNN SDPA)           bench/attention_bench.cpp
#   2Mamba (power 2) and 2Mamba-E (exp),     bench/linattn_bench.cpp (the fused quadratic LinAttn op,
#   then Mamba-2S / linear (power 1)           beside coil's attention)
#   2Mamba chunked vs quadratic (crossover)  bench/linattn_chunked_bench.cpp
#   Mamba-2 SSD (chunked)                    bench/ssd_bench.cpp
#   Mamba-1 selective scan                   bench/scan_bench.cpp
#   attention decode step                    bench/decode_bench.cpp
# Builds the bench targets in BUILD_DIR first (Release, CUDA) unless SKIP_BUILD=1 (gpu_check.sh runs
# this after its tests on the build it made).
#   bash bench/mixers_gpu.sh                          # logs in build-mixers-gpu/logs (and $OUT)
#   BUILD_DIR=b ITERS=10 LENGTHS=2048,8192 bash bench/mixers_gpu.sh
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-mixers-gpu}
JOBS=${JOBS:-$(nproc)}
ITERS=${ITERS:-10}
LENGTHS=${LENGTHS:-1024,2048,4096,8192,16384,32768}
LOG=$BUILD_DIR/logs
mkdir -p "$LOG"
export PATH=/usr/local/cuda/bin:$PATH
keep() { [ -n "${OUT:-}" ] && cp "$@" "$OUT/" 2>/dev/null; return 0; }
benches=(coil_attention_bench coil_linattn_bench coil_linattn_chunked_bench coil_ssd_bench coil_scan_bench
         coil_decode_bench)

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  generator=()
  command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
  cmake -S . -B "$BUILD_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DCOIL_CUDA=ON \
    -DCMAKE_POLICY_VERSION_MINIMUM=3.5 >"$LOG/configure.log" 2>&1 || { tail -40 "$LOG/configure.log"; exit 2; }
  cmake --build "$BUILD_DIR" -j "$JOBS" --target "${benches[@]}" >"$LOG/build.log" 2>&1 ||
    { grep -E -A5 "error|FAILED" "$LOG/build.log" | head -60; exit 3; }
fi
echo "== device: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -n 1)"
echo "== date: $(date -u +%Y-%m-%dT%H:%MZ)"

rc=0
# run NAME LOGFILE ARGS...: one benchmark process; its output to the log and the console.
run() {
  local name=$1 log=$2
  shift 2
  echo
  echo "== $name $*"
  "$BUILD_DIR/bench/$name" "$@" 2>&1 | tee "$LOG/$log"
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "!! $name failed"; rc=1; }
  keep "$LOG/$log"
}
common=(--iters "$ITERS" --lengths "$LENGTHS")
run coil_attention_bench attention.log "${common[@]}"
run coil_linattn_bench linattn_power2.log "${common[@]}" --power 2  # 2Mamba and 2Mamba-E columns
run coil_linattn_bench linattn_power1.log "${common[@]}" --power 1
run coil_linattn_chunked_bench linattn_chunked.log "${common[@]}"
run coil_ssd_bench ssd.log "${common[@]}"
run coil_scan_bench scan.log "${common[@]}"
run coil_decode_bench decode.log "$ITERS"
echo
echo "== mixers_gpu: $([ $rc -eq 0 ] && echo "every benchmark ran" || echo "SOME BENCHMARKS FAILED")"
exit $rc
