#!/usr/bin/env bash
# End-to-end training throughput on one GPU, coil against PyTorch in one run (docs/PERFORMANCE.md):
# builds coil (Release, CUDA), runs the mixed-precision tests (tests/cuda/mixed_precision_test.cpp),
# then `coil bench train` and bench/train_torch.py on the paper's small config at each shape.
#   bash bench/train_gpu.sh                                  # softmax at N=2048 B=8 and N=8192 B=2
#   MODELS="softmax 2mamba" SHAPES="8x2048" TORCH_MODES="eager compile" bash bench/train_gpu.sh
# TORCH_MODELS (default "softmax 2mamba") picks the models that also run in PyTorch.
# Linear mixers run the form FORM (default auto: the fused quadratic LinAttn op up to the config's
# chunked_from tokens, the chunked op above; 2Mamba-E always runs its quadratic op).
# Rows are also appended as JSON lines to $JSON (default $BUILD_DIR/train_bench.jsonl).
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build-gpu}
MODELS=${MODELS:-softmax}
SHAPES=${SHAPES:-"8x2048 2x8192"}
TORCH_MODES=${TORCH_MODES:-"eager compile"}
STEPS=${STEPS:-10}
TESTS=${TESTS:-1}
JSON=${JSON:-$BUILD_DIR/train_bench.jsonl}
export PATH=/usr/local/cuda/bin:$PATH

generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
cmake -S . -B "$BUILD_DIR" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release -DCOIL_CUDA=ON \
  -DCMAKE_POLICY_VERSION_MINIMUM=3.5 >"$BUILD_DIR.configure.log" 2>&1 || { tail -30 "$BUILD_DIR.configure.log"; exit 2; }
cmake --build "$BUILD_DIR" -j "$(nproc)" --target coil test_cuda >"$BUILD_DIR.build.log" 2>&1 ||
  { grep -E "error|FAILED" "$BUILD_DIR.build.log" | head -30; exit 3; }
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader

if [ "$TESTS" = 1 ]; then
  "$BUILD_DIR/tests/test_cuda" --gtest_filter='Autocast*:MixedPrecision*' 2>&1 |
    grep -E "^\[|OK|FAILED|rel" | grep -v "^\[ RUN" || true
fi

rows=()
for shape in $SHAPES; do
  B=${shape%x*}; T=${shape#*x}
  for m in $MODELS; do
    form=()
    case $m in 2mamba|2mamba-dt|2mamba-e|mamba2s|linear) form=(--form "${FORM:-auto}") ;; esac
    out=$("$BUILD_DIR/launch/coil" bench train --config "configs/models/$m-small.yaml" --batch "$B" \
          --seq "$T" --steps "$STEPS" --json "$JSON" "${form[@]}" 2>&1) || true
    rows+=("coil  $(echo "$out" | tail -n 1)")
    torch_model=""
    for t in ${TORCH_MODELS:-softmax 2mamba}; do [ "$t" = "$m" ] && torch_model=$m; done
    if [ -n "$torch_model" ] && python3 -c "import torch" 2>/dev/null; then
      tout=$(python3 bench/train_torch.py --model "$torch_model" --mode $TORCH_MODES --batch "$B" \
             --seq "$T" --steps "$STEPS" --json "$JSON" 2>&1) || true
      while IFS= read -r line; do rows+=("torch $line"); done < <(echo "$tout" | tail -n +2)
    fi
  done
done
echo
echo "== train_gpu summary ($(date -u +%Y-%m-%dT%H:%MZ))"
echo "who   model                  [mode]   params     B      T    step ms    tokens/s    MFU   peak mem      loss"
for r in "${rows[@]}"; do echo "$r"; done
