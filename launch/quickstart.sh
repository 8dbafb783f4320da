#!/usr/bin/env bash
# The main job (README): on a fresh Debian 12 machine, install what coil needs, build it, prepare a
# small plain-English corpus, tokenize it byte-level, train a tiny 2Mamba and a tiny softmax model
# with the same parameter count, data, tokens and optimizer (configs/runs/quickstart-*.yaml) under
# `mpirun -np 2` (data parallel; on the CPU, or on the GPU when nvidia-smi finds one), and print
# their held-out losses side by side. About 15 minutes on 2 CPU cores, the build included.
#
# Environment: BUILD_DIR (default build), WORK (default runs/quickstart: corpus, token shards,
# checkpoints and metrics; the corpus and shards are reused by a second run), STEPS (override
# train.steps), CORPUS_MB (default 3), COIL_CUDA (AUTO|ON|OFF; default ON with a GPU, else OFF).
set -euo pipefail
cd "$(dirname "$0")/.."
t0=$(date +%s)
elapsed() { echo "$(( $(date +%s) - t0 )) s"; }

bash launch/setup_debian.sh
BUILD_DIR=${BUILD_DIR:-build}
WORK=${WORK:-runs/quickstart}
gpu=0
if command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then gpu=1; fi
cuda=${COIL_CUDA:-$([ $gpu = 1 ] && echo ON || echo OFF)}

echo "== build ($BUILD_DIR, CUDA $cuda)"
cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCOIL_CUDA="$cuda" >/dev/null
cmake --build "$BUILD_DIR" -j "$(nproc)" --target coil
COIL="$BUILD_DIR/launch/coil"
echo "   built in $(elapsed)"

echo "== corpus and byte-level token shards ($WORK)"
if [ -f "$WORK/tokens/train.shards" ] && [ -f "$WORK/tokens/heldout.shards" ]; then
  echo "   reusing $WORK/tokens"
else
  # The quicker text sources (the Bible via diatheke and perl-doc take longest to extract).
  "$COIL" data prepare --out "$WORK/corpus" --max-mb "${CORPUS_MB:-3}" --seed 1 \
    --sources kjv,wordnet,fortunes,jargon,gcide,sotu,brown,moby-dick
  "$COIL" data tokenize --corpus "$WORK/corpus" --tokenizer bytes --out "$WORK/tokens"
fi
echo "   data ready at $(elapsed)"

# Two ranks; as root mpirun needs --allow-run-as-root, and on one core --oversubscribe.
mpirun_args=(-np 2)
[ "$(id -u)" -eq 0 ] && mpirun_args+=(--allow-run-as-root)
[ "$(nproc)" -lt 2 ] && mpirun_args+=(--oversubscribe)
# Each rank gets its share of the cores for the CPU kernels.
threads=$(( $(nproc) / 2 ))
export OMP_NUM_THREADS=$(( threads > 0 ? threads : 1 ))
sets=(--set "data.dir=$WORK/tokens")
[ $gpu = 1 ] && sets+=(--set train.device=cuda)
[ -n "${STEPS:-}" ] && sets+=(--set "train.steps=$STEPS")

declare -A params held train_loss secs
models=(2mamba softmax)
for m in "${models[@]}"; do
  echo "== train quickstart-$m (mpirun ${mpirun_args[*]}, dp 2)"
  run="$WORK/$m"
  rm -rf "$run"  # a fresh run each time (the shards are kept)
  s=$(date +%s)
  mpirun "${mpirun_args[@]}" "$COIL" train --config "configs/runs/quickstart-$m.yaml" "${sets[@]}" \
    --set "checkpoint.dir=$run" --set "logging.jsonl=$run/metrics.jsonl" | tee "$WORK/$m.log" |
    grep -E '^(run |step |checkpoint |done)'
  secs[$m]=$(( $(date +%s) - s ))
  params[$m]=$(sed -n 's/^run [^:]*: [a-z0-9]* model, \([0-9]*\) parameters.*/\1/p' "$WORK/$m.log")
  read -r train_loss[$m] held[$m] < <(python3 - "$run/metrics.jsonl" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
evals = [r for r in rows if r.get("eval_loss") is not None]
print(f"{rows[-1]['loss']:.4f} {evals[-1]['eval_loss']:.4f} ")
PY
  )
done

steps=$(sed -n 's/^done: \([0-9]*\) steps.*/\1/p' "$WORK/2mamba.log")
echo
echo "== held-out loss after $steps steps (same corpus split, tokens, optimizer and parameter budget;"
echo "   byte-level, nats per byte; lower is better)"
printf '%-10s %12s %12s %14s %10s\n' model parameters "train loss" "held-out loss" "time"
for m in "${models[@]}"; do
  printf '%-10s %12s %12s %14s %9ss\n' "$m" "${params[$m]}" "${train_loss[$m]}" "${held[$m]}" "${secs[$m]}"
done
echo "total $(elapsed); metrics: $WORK/*/metrics.jsonl (python3 launch/plot_metrics.py); checkpoints: $WORK/<model>/"
