#!/usr/bin/env bash
# One device call on a multi-GPU node: builds coil with CUDA and NCCL into BUILD_DIR unless a build is
# already there (a warm node keeps it between calls), then runs bench/multi_gpu.sh with the caller's
# environment (PARTS, BUDGET_S, D_EXTRA, ...), and copies its log and summary to $OUT (the device
# call's output folder) with a short tail printed last. A call is limited to 10 minutes, so split the
# parts over calls on 4 or 8 GPUs, e.g.
#   PARTS="t a" BUDGET_S=1300 bash bench/multi_gpu_node.sh     # part a ends at 38% of BUDGET_S
#   PARTS="b c" BUDGET_S=520 bash bench/multi_gpu_node.sh      # b, c end at 50%, 58%
#   PARTS="d e" BUDGET_S=520 D_EXTRA="--set model.recompute=true" bash bench/multi_gpu_node.sh
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-/tmp/b}
OUT=${OUT:-/tmp/coil_multi_gpu_out}
mkdir -p "$OUT"
t=$SECONDS
if [[ ! -x $BUILD_DIR/launch/coil || ! -x $BUILD_DIR/tests/test_nccl ]]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCOIL_CUDA=ON -DCOIL_CUDA_ARCHS="${COIL_CUDA_ARCHS:-90a}" \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_POLICY_VERSION_MINIMUM=3.5 >"$OUT/configure.log" 2>&1 ||
    { tail -20 "$OUT/configure.log"; exit 2; }
  ninja -C "$BUILD_DIR" coil test_nccl coil_grid_dryrun >"$OUT/build.log" 2>&1 ||
    { grep -E "error|FAILED" "$OUT/build.log" | head -20; exit 3; }
  echo "multi_gpu_node: built in $((SECONDS - t)) s"
else
  echo "multi_gpu_node: reusing the build in $BUILD_DIR"
fi
work_out=${WORK_OUT:-/tmp/coil_multi_gpu_logs}
COIL=$BUILD_DIR/launch/coil OUT=$work_out bash bench/multi_gpu.sh >"$OUT/multi_gpu.log" 2>&1
rc=$?
cp "$work_out/summary.txt" "$OUT/" 2>/dev/null
# every part's table, then the last lines of failed runs' logs (the " | " lines)
sed -n '/== summary/,$p' "$OUT/multi_gpu.log"
grep " | " "$OUT/multi_gpu.log" | tail -n "${TAILN:-12}"
echo "multi_gpu_node: multi_gpu.sh rc $rc"
exit $rc
