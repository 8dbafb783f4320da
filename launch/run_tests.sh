#!/usr/bin/env bash
# Set up (Debian 12), configure, build and run the whole test suite.
#   bash launch/run_tests.sh            # build dir: build/
#   BUILD_DIR=b COIL_CUDA=OFF bash launch/run_tests.sh
# CUDA code is compiled when nvcc is found (COIL_CUDA=AUTO); CUDA tests skip themselves without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup_debian.sh
BUILD_DIR=${BUILD_DIR:-build}
JOBS=${JOBS:-$(nproc)}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCOIL_CUDA="${COIL_CUDA:-AUTO}"
cmake --build "$BUILD_DIR" -j "$JOBS"
cd "$BUILD_DIR"
ctest --output-on-failure -j "$JOBS" --timeout 600
