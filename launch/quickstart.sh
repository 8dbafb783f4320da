#!/usr/bin/env bash
# The main job. Until the trainer, corpus and evaluation pieces land, it builds coil and trains a tiny
# softmax-attention LM and a tiny 2Mamba LM (configs/models/*-tiny.yaml) on the same synthetic batch
# on the CPU, then prints both models' losses side by side.
set -euo pipefail
cd "$(dirname "$0")/.."
bash launch/setup_debian.sh
BUILD_DIR=${BUILD_DIR:-build}
STEPS=${STEPS:-200}
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCOIL_CUDA="${COIL_CUDA:-AUTO}"
cmake --build "$BUILD_DIR" -j "$(nproc)" --target coil
declare -A result
for m in softmax 2mamba; do
  echo "== $m"
  "$BUILD_DIR/launch/coil" model info "configs/models/$m-tiny.yaml" | sed -n '1,3p'
  "$BUILD_DIR/launch/coil" demo --config "configs/models/$m-tiny.yaml" --steps "$STEPS" --log-every 50 \
    | tee "/tmp/coil_quickstart_$m.log"
  result[$m]=$(tail -n 1 "/tmp/coil_quickstart_$m.log")
done
echo
echo "== comparison (same batch, same steps, same optimizer)"
for m in softmax 2mamba; do printf '%-8s %s\n' "$m" "${result[$m]}"; done
