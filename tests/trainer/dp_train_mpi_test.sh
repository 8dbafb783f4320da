#!/usr/bin/env bash
# Data parallel `coil train` under mpirun (CTest: trainer_dp_mpi). For a 2Mamba model on byte-level
# token shards in document mode (padding masked, so ranks count different numbers of targets) and a
# softmax model on synthetic batches:
#   1. dp1 and dp2 (mpirun -np 2) runs with the same global batch give the same per-step and
#      held-out losses (relative difference <= 1e-5);
#   2. the dp2 checkpoint of step 4 resumed with dp1, and the dp1 checkpoint resumed with dp2,
#      continue with the same losses as the uninterrupted runs (<= 1e-5);
#   3. only rank 0 writes: one metrics line per step, no duplicate progress lines.
#   bash tests/trainer/dp_train_mpi_test.sh COIL MPIEXEC SOURCE_DIR WORKDIR
set -euo pipefail
COIL=$1
MPIEXEC=$2
SRC=$3
WORK=$4
command -v python3 >/dev/null || { echo "python3 not found: skipped"; exit 77; }
rm -rf "$WORK"
mkdir -p "$WORK"
export OMP_NUM_THREADS=1
mpi() { "$MPIEXEC" --allow-run-as-root --oversubscribe -np 2 "$@"; }

# A small corpus of documents of varied length (deterministic), byte-tokenized into $WORK/tok.
source "$SRC/tests/trainer/train_mpi_lib.sh"
make_byte_shards 4 300 40

common=(--set train.steps=8 --set train.batch_size=4 --set train.seq_len=32 --set train.grad_accum=2
        --set train.eval_every=4 --set train.eval_batches=2 --set train.log_every=1
        --set schedule.warmup=2 --set checkpoint.every=4 --set checkpoint.keep_last=0)
run() {  # NAME CONFIG EXTRA... -> $WORK/NAME/{ckpt,metrics.jsonl,log}
  local name=$1 config=$2
  shift 2
  local launcher=()
  [[ " $* " == *" parallel.dp=2 "* ]] && launcher=(mpi)
  "${launcher[@]}" "$COIL" train --config "$SRC/configs/runs/$config" "${common[@]}" "${extra[@]}" \
    --set checkpoint.dir="$WORK/$name/ckpt" --set logging.jsonl="$WORK/$name/metrics.jsonl" "$@" \
    >"$WORK/$name.log" 2>&1 || { cat "$WORK/$name.log"; echo "FAILED: $name"; exit 1; }
}

for case in shards synthetic; do
  if [[ $case == shards ]]; then
    config=tiny-2mamba.yaml
    extra=(--set model.vocab=259 --set data.kind=shards --set data.dir="$WORK/tok" --set data.mode=document)
  else
    config=tiny-softmax.yaml
    extra=()
  fi
  echo "== $config on $case data"
  run "$case-dp1" "$config"
  run "$case-dp2" "$config" --set parallel.dp=2
  compare "$case-dp1" "$case-dp2" 1
  [[ $(grep -c "^step      8/8 | loss" "$WORK/$case-dp2.log") == 1 ]] || { echo "rank 1 printed progress"; exit 1; }
  run "$case-dp2to1" "$config" --resume "$WORK/$case-dp2/ckpt/step_00000004.h5"
  compare "$case-dp1" "$case-dp2to1" 5
  run "$case-dp1to2" "$config" --set parallel.dp=2 --resume "$WORK/$case-dp1/ckpt/step_00000004.h5"
  compare "$case-dp1" "$case-dp1to2" 5
done
echo "dp train mpi: ok"
