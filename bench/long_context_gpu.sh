#!/usr/bin/env bash
# Long context on one GPU: the training step of the paper's small configs at batch 1 and growing T,
# with activation recompute (model.recompute), until a length does not fit or runs past its time.
# 2Mamba takes the chunked op (its state is a fixed size, so its cost grows linearly in T), softmax the
# fused causal attention (quadratic in T). Prints one row per (model, T): step ms, tokens/s, peak memory,
# and each model's longest T. Builds nothing: COIL names a built `coil` (-DCOIL_CUDA=ON).
#   COIL=/tmp/g/launch/coil bash bench/long_context_gpu.sh
#   MODELS="2mamba softmax" FROM=8192 TO=131072 STEPS=3 TMO=120 COIL=... bash bench/long_context_gpu.sh
#   DEVICE=cpu FROM=64 TO=256 COIL=build/launch/coil bash bench/long_context_gpu.sh   # dry run (tiny, fp32)
set -uo pipefail
cd "$(dirname "$0")/.."
: "${COIL:?set COIL to a built coil binary (CUDA), e.g. COIL=/tmp/g/launch/coil}"
MODELS=${MODELS:-"2mamba softmax"}
FROM=${FROM:-8192}
TO=${TO:-131072}
STEPS=${STEPS:-3}
TMO=${TMO:-120}
OUT=${OUT:-/tmp/coil_long_context}
DEVICE=${DEVICE:-cuda}
size=small
dev=()
if [[ $DEVICE == cpu ]]; then size=tiny; dev=(--device cpu --precision fp32); fi
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1
header="label / params / B / T / precision / step ms / tokens/s / MFU / peak mem / loss"
rows=("$(printf '%-8s %8s   %s' model T "$header")")
for model in $MODELS; do
  form=()
  [[ $model == 2mamba || $model == linear ]] && form=(--form chunked)
  T=$FROM
  longest="-"
  while ((T <= TO)); do
    log="$OUT/$model-T$T.log"
    timeout -k 5 "$TMO" "$COIL" bench train --config "configs/models/$model-$size.yaml" --batch 1 --seq "$T" \
      --steps "$STEPS" --warmup 1 --recompute "${form[@]}" "${dev[@]}" --label "$model-T$T" >"$log" 2>&1
    rc=$?
    if ((rc != 0)); then
      why="rc $rc"
      ((rc == 124 || rc == 137)) && why="over ${TMO}s"
      grep -qi "out of memory" "$log" && why="out of memory"
      rows+=("$(printf '%-8s %8s   %s' "$model" "$T" "$why")")
      break
    fi
    # the bench's row: "... ms/step ... tokens/s ... peak ..." (last line naming the label)
    line=$(grep -m1 "$model-T$T" "$log" | tail -1)
    rows+=("$(printf '%-8s %8s   %s' "$model" "$T" "$line")")
    longest=$T
    T=$((T * 2))
  done
  rows+=("$(printf '%-8s longest T that ran: %s' "$model" "$longest")")
done
echo
echo "== long context, one $DEVICE device, $size configs, batch 1, recompute ($(date -u +%Y-%m-%dT%H:%MZ))"
printf '%s\n' "${rows[@]}"
