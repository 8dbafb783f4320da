#!/usr/bin/env bash
# `coil train` checkpoints across parallel layouts (CTest: trainer_layout_resume_mpi). For a softmax
# model on synthetic batches and a 2Mamba model on byte-level token shards in document mode (padding
# masked, so ranks count different numbers of targets), fp32 on the CPU:
#   1. the dp2 checkpoint of step 4 resumed with dp1, tp2 and sp2 continues steps 5..8 with the
#      per-step and held-out losses of the uninterrupted dp2 run (relative difference <= 1e-5);
#      sp2 in every parallel.sp_style the mixer takes (auto, chain, gather; softmax also ring and
#      balanced) as well;
#      So do dp2 x tp2, tp2 x sp2, dp2 x sp2 and dp2 x sp2 with ZeRO-1 (mpirun -np 4).
#   2. the checkpoints the tp2 and the sp2 runs wrote at step 6 (gathered full tensors) resume with
#      dp1 for steps 7..8 with the same losses (<= 1e-5);
#   3. ZeRO-1 (parallel.zero1, dp2) resumed from the same dp2 checkpoint continues with the losses
#      of plain dp2 (<= 1e-5), and the checkpoint it wrote at step 6 resumes with dp1.
# Every run starts from the one dp2 checkpoint: from step 0, runs whose reductions associate
# differently (dp1, dp2, a sharded dp2) drift apart on this 2Mamba data by up to ~1e-4 at step 8
# (they already do between dp1 and dp2 replicas), which says nothing about the checkpoints.
#   bash tests/trainer/layout_resume_mpi_test.sh COIL MPIEXEC SOURCE_DIR WORKDIR
set -euo pipefail
COIL=$1
MPIEXEC=$2
SRC=$3
WORK=$4
command -v python3 >/dev/null || { echo "python3 not found: skipped"; exit 77; }
rm -rf "$WORK"
mkdir -p "$WORK"
export OMP_NUM_THREADS=1

# A small corpus of documents of varied length (deterministic), byte-tokenized into $WORK/tok.
source "$SRC/tests/trainer/train_mpi_lib.sh"
make_byte_shards 5 200 30

common=(--set train.steps=8 --set train.batch_size=4 --set train.seq_len=32 --set train.grad_accum=2
        --set train.eval_every=4 --set train.eval_batches=2 --set train.log_every=1
        --set schedule.warmup=2 --set checkpoint.every=2 --set checkpoint.keep_last=0)
run() {  # NAME RANKS CONFIG EXTRA... -> $WORK/NAME/{ckpt,metrics.jsonl,log}
  local name=$1 ranks=$2 config=$3
  shift 3
  local launcher=()
  [[ $ranks == 1 ]] || launcher=("$MPIEXEC" --allow-run-as-root --oversubscribe -np "$ranks")
  "${launcher[@]}" "$COIL" train --config "$SRC/configs/runs/$config" "${common[@]}" "${extra[@]}" \
    --set checkpoint.dir="$WORK/$name/ckpt" --set logging.jsonl="$WORK/$name/metrics.jsonl" "$@" \
    >"$WORK/$name.log" 2>&1 || { cat "$WORK/$name.log"; echo "FAILED: $name"; exit 1; }
}

for case in softmax 2mamba; do
  if [[ $case == 2mamba ]]; then
    config=tiny-2mamba.yaml
    # 260 rows (the 259 byte tokens and one unused) split over tp = 2.
    extra=(--set model.vocab=260 --set data.kind=shards --set data.dir="$WORK/tok" --set data.mode=document)
  else
    config=tiny-softmax.yaml
    extra=()
  fi
  echo "== $config"
  run "$case-dp2" 2 "$config" --set parallel.dp=2
  ckpt=$WORK/$case-dp2/ckpt/step_00000004.h5
  run "$case-dp1" 1 "$config" --resume "$ckpt"
  compare "$case-dp2" "$case-dp1" 5
  run "$case-tp2" 2 "$config" --set parallel.dp=1 --set parallel.tp=2 --resume "$ckpt"
  compare "$case-dp2" "$case-tp2" 5
  [[ $(grep -c "^step      8/8 | loss" "$WORK/$case-tp2.log") == 1 ]] || { echo "rank 1 printed progress"; exit 1; }
  run "$case-sp2" 2 "$config" --set parallel.dp=1 --set parallel.sp=2 --resume "$ckpt"
  compare "$case-dp2" "$case-sp2" 5
  # parallel.sp_style auto: the state chain for 2Mamba, the K, V all-gather for softmax; every other
  # style the mixer takes continues with the same losses.
  if [[ $case == 2mamba ]]; then auto=chain; others=(gather); else auto=gather; others=(chain ring balanced); fi
  grep -q "sp style $auto" "$WORK/$case-sp2.log" ||
    { grep "^run " "$WORK/$case-sp2.log"; echo "sp_style auto is not $auto"; exit 1; }
  for style in "${others[@]}"; do
    run "$case-sp2-$style" 2 "$config" --set parallel.dp=1 --set parallel.sp=2 --set parallel.sp_style=$style \
      --resume "$ckpt"
    grep -q "sp style $style" "$WORK/$case-sp2-$style.log" || { echo "sp_style $style not in the banner"; exit 1; }
    compare "$case-dp2" "$case-sp2-$style" 5
  done
  for layout in "dp=2 tp=2" "tp=2 sp=2" "dp=2 sp=2" "dp=2 sp=2 zero1=true"; do
    name=$case-${layout// /-}
    sets=(--set parallel.dp=1)
    for kv in $layout; do sets+=(--set "parallel.$kv"); done
    run "$name" 4 "$config" "${sets[@]}" --resume "$ckpt"
    compare "$case-dp2" "$name" 5
  done
  for from in tp2 sp2; do
    run "$case-$from-dp1" 1 "$config" --resume "$WORK/$case-$from/ckpt/step_00000006.h5"
    compare "$case-dp2" "$case-$from-dp1" 7
  done
  run "$case-zero" 2 "$config" --set parallel.dp=2 --set parallel.zero1=true --resume "$ckpt"
  compare "$case-dp2" "$case-zero" 5
  run "$case-zero-dp1" 1 "$config" --resume "$WORK/$case-zero/ckpt/step_00000006.h5"
  compare "$case-dp2" "$case-zero-dp1" 7
done
# model.recompute under sp2 (2Mamba's chain: every layer replayed in backward, the chain's messages
# outside the replay): from step 0 the losses equal those of the run without recompute. Both start
# fresh: a checkpoint does not resume across a change of model.recompute.
config=tiny-2mamba.yaml
extra=(--set model.vocab=260 --set data.kind=shards --set data.dir="$WORK/tok" --set data.mode=document)
run 2mamba-sp2-plain 2 "$config" --set parallel.sp=2
run 2mamba-sp2-recompute 2 "$config" --set parallel.sp=2 --set model.recompute=true
compare 2mamba-sp2-plain 2mamba-sp2-recompute 1
echo "layout resume mpi: ok"
