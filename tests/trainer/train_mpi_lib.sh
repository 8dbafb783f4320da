#!/usr/bin/env bash
# Shared by the trainer's MPI scripts (dp_train_mpi_test.sh, layout_resume_mpi_test.sh), sourced after
# they set COIL and WORK:
#   make_byte_shards SEED N_TRAIN N_HELDOUT   a deterministic corpus of documents of varied length,
#                                             byte-tokenized into $WORK/tok (splits train, heldout)
#   compare A B FIRST_STEP                    the per-step and held-out losses of run B from FIRST_STEP
#                                             to 8 equal run A's (relative difference <= 1e-5), and B
#                                             has one metrics line per step (rank 0 only)

make_byte_shards() {
  mkdir -p "$WORK/corpus"
  python3 - "$WORK/corpus" "$1" "$2" "$3" <<'PY'
import json, random, sys
rng = random.Random(int(sys.argv[2]))
words = "the of and to in a is that for it as was with be by on not he this are or his".split()
for split, n in (("train", int(sys.argv[3])), ("heldout", int(sys.argv[4]))):
    with open(f"{sys.argv[1]}/{split}.jsonl", "w") as f:
        for i in range(n):
            text = " ".join(rng.choice(words) for _ in range(rng.randint(2, 30)))
            f.write(json.dumps({"id": f"t/{i}", "source": "t", "text": text}) + "\n")
PY
  "$COIL" data tokenize --corpus "$WORK/corpus" --tokenizer bytes --out "$WORK/tok" --threads 1 >/dev/null
}

compare() {
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
