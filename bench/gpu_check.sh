#!/usr/bin/env bash
# The one-command GPU check: configures a Release build with the CUDA backend into build-gpu, builds it
# with every core, runs every test (CTest shows the output of failures), and prints a summary table
# last: the device, the build and test times, and passed / failed / skipped counts per test folder.
# With BENCH=1 it then runs every mixer's kernel benchmark on the same build (bench/mixers_gpu.sh;
# ~3 more minutes), its tables printed before the summary.
#   bash bench/gpu_check.sh                 # from anywhere; extra arguments go to the cmake configure
#   BUILD_DIR=b JOBS=8 BENCH=1 bash bench/gpu_check.sh
#   CTEST_ARGS="-L cuda" bash bench/gpu_check.sh   # a subset of the tests (ctest arguments)
# Exit status: 0 when everything built, no test failed and (BENCH=1) every benchmark ran.
# The eval tests read the lm-eval jsonl files from $COIL_EVAL_DATA, else ../shared/eval-data. A GPU node
# that gets only a copy of the repository has no ../shared: copy the folder into .evaldata/ (ignored by
# git; `cp -r ../shared/eval-data .evaldata`) and send it along; this script then points the tests at it.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD_DIR=${BUILD_DIR:-build-gpu}
JOBS=${JOBS:-$(nproc)}
LOG_DIR="$BUILD_DIR/gpu_check"
# Tests that start MPI run as root on some GPU nodes.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export PATH=/usr/local/cuda/bin:$PATH
if [ -z "${COIL_EVAL_DATA:-}" ] && [ ! -d ../shared/eval-data ] && [ -d .evaldata ]; then
  export COIL_EVAL_DATA=$ROOT/.evaldata
fi

device=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null |
         head -n 1)
device=${device:-"no GPU visible to nvidia-smi"}
echo "gpu_check: device: $device"

generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
start=$(date +%s)
# CMAKE_POLICY_VERSION_MINIMUM lets CMake 4
# configure the GoogleTest sources of older distributions.
if ! cmake -S . -B "$BUILD_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DCOIL_CUDA=ON \
     -DCMAKE_POLICY_VERSION_MINIMUM=3.5 "$@"; then
  echo "gpu_check: FAILED to configure (see above)"
  exit 2
fi
if ! cmake --build "$BUILD_DIR" -j "$JOBS"; then
  echo "gpu_check: FAILED to build (see above)"
  exit 3
fi
built=$(date +%s)

mkdir -p "$LOG_DIR"
# GPU nodes have no package access: tests labelled "network" (corpus download) run in CI only.
# CTEST_ARGS narrows the run (e.g. CTEST_ARGS="-L cuda" or "-R Attention"), word-split on purpose.
# shellcheck disable=SC2086
ctest --test-dir "$BUILD_DIR" --output-on-failure -j "$JOBS" --timeout 600 -LE network ${CTEST_ARGS:-} 2>&1 |
  tee "$LOG_DIR/ctest.log"
ctest_rc=${PIPESTATUS[0]}
tested=$(date +%s)
bench_rc=0
if [ "${BENCH:-0}" = 1 ]; then
  BUILD_DIR=$BUILD_DIR SKIP_BUILD=1 bash bench/mixers_gpu.sh 2>&1 | tee "$LOG_DIR/bench.log"
  bench_rc=${PIPESTATUS[0]}
fi

# --- summary --------------------------------------------------------------------------------------
# Test name -> folder label, then each result line of the log -> (name, status).
labels=$(ctest --test-dir "$BUILD_DIR" --print-labels 2>/dev/null | sed -n 's/^  *\([A-Za-z0-9_]*\)$/\1/p')
: >"$LOG_DIR/labels.txt"
for label in $labels; do
  ctest --test-dir "$BUILD_DIR" -N -L "^${label}\$" 2>/dev/null |
    sed -nE "s/^ *Test +#[0-9]+: (.*)$/\1\t$label/p" >>"$LOG_DIR/labels.txt"
done
# "  12/324 Test  #12: Suite.Name  # GetParam() = ... ........   Passed    0.01 sec" (or ***Failed, ...)
sed -nE 's/^ *[0-9]+\/[0-9]+ Test +#[0-9]+: (.*[^ .]) [ .]+\**([A-Za-z]+).*/\1\t\2/p' \
  "$LOG_DIR/ctest.log" >"$LOG_DIR/results.txt"

echo
echo "== gpu_check summary ($(date -u +%Y-%m-%dT%H:%MZ))"
echo "device : $device"
echo "build  : $((built - start)) s ($JOBS jobs)   tests: $((tested - built)) s"
awk -F '\t' '
  FNR == NR { label[$1] = $2; next }
  {
    l = ($1 in label) ? label[$1] : "other"; s = $2
    if (s == "Passed") pass[l]++; else if (s == "Skipped") skip[l]++; else { fail[l]++; bad[++nbad] = $1 " (" s ")" }
    seen[l] = 1
  }
  END {
    printf "%-10s %7s %7s %7s\n", "folder", "passed", "failed", "skipped"
    for (l in seen) { printf "%-10s %7d %7d %7d\n", l, pass[l], fail[l], skip[l]; tp += pass[l]; tf += fail[l]; ts += skip[l] }
    printf "%-10s %7d %7d %7d\n", "total", tp, tf, ts
    for (i = 1; i <= nbad; i++) print "FAILED: " bad[i]
  }' "$LOG_DIR/labels.txt" "$LOG_DIR/results.txt"
[ "$bench_rc" -eq 0 ] || echo "gpu_check: BENCHMARKS FAILED (bench/mixers_gpu.sh exit $bench_rc)"
if [ "$ctest_rc" -eq 0 ]; then echo "gpu_check: OK"; else echo "gpu_check: TESTS FAILED (ctest exit $ctest_rc)"; fi
[ "$ctest_rc" -eq 0 ] && exit "$bench_rc"
exit "$ctest_rc"
