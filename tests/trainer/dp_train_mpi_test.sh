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
mkdir -p "$WORK/corpus"
export OMP_NUM_THREADS=1
mpi() { "$MPIEXEC" --allow-run-as-root --oversubscribe -np 2 "$@"; }

# A small corpus of documents of varied length (deterministic), byte-tokenized.
python3 - "$WORK/corpus" <<'PY'
import json, random, sys
rng = random.Random(4)
words = "the of and to in a is that for it as was with be by on not he this are or his".split()
for split, n in (("train", 300), ("heldout", 40)):
    with open(f"{sys.argv[1]}/{split}.jsonl", "w") as f:
        for i in range(n):
            text = " ".join(rng.choice(words) for _ in range(rng.randint(2, 30)))
            f.write(json.dumps({"id": f"t/{i}", "source": "t", "text": text}) + "\n")
PY
"$COIL" data tokenize --corpus "$WORK/corpus" --tokenizer bytes --out "$WORK/tok" --threads 1 >/dev/null

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

compare() {  # A B FIRST_STEP: per-step losses of B from FIRST_STEP on equal A's (and held-out losses)
  python3 - "$WORK/$1/metrics.jsonl" "$WORK/$2/metrics.jsonl" "$3" <<'PY'
import json, sys
a = {r["step"]: r for r in map(json.loads, open(sys.argv[1]))}
b = [json.loads(l) for l in open(sys.argv[2])]
first = int(sys.argv[3])
steps = [r["step"] for r in b]
assert steps == list(range(first, 9)), f"{sys.argv[2]}: steps {steps} (one line per step, rank 0 only)"
worst = 0.0
for r in b:
    for key in ("loss", "eval_loss"):
        if key in r:
            ref = a[r["step"]][key]
            rel = abs(r[key] - ref) / abs(ref)
            worst = max(worst, rel)
            assert rel <= 1e-5, f"step {r['step']} {key}: {r[key]} vs {ref} (rel {rel:.3g})"
print(f"  {sys.argv[2].split('/')[-2]} vs {sys.argv[1].split('/')[-2]}: steps {first}..8, worst rel diff {worst:.3g}")
PY
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
