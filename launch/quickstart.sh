#!/usr/bin/env bash
# The main job. Until the trainer, data and evaluation pieces land, it builds coil and trains a tiny
# softmax-attention language model on the CPU, printing the loss going down.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup_debian.sh
BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCOIL_CUDA="${COIL_CUDA:-AUTO}"
cmake --build "$BUILD_DIR" -j "$(nproc)" --target coil
"$BUILD_DIR/launch/coil" demo "$@"
