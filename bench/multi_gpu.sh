#!/usr/bin/env bash
# Multi-GPU runs of one node (issue "Multi-GPU runs"): NCCL correctness, data-parallel weak scaling,
# tensor parallel, long context with sequence parallel, and a two-"node" mpirun launch. Builds
# nothing: COIL names an already built `coil` (configured with -DCOIL_CUDA=ON, NCCL found).
#
#   COIL=/tmp/b/launch/coil OUT=/tmp/mg bash bench/multi_gpu.sh            # every GPU of the node
#   DEVICE=cpu COIL=build/launch/coil bash bench/multi_gpu.sh               # the same steps on the CPU
#
# Parts (PARTS="t a b c d e" by default; each sub-run has a timeout, the whole stays under BUDGET_S):
#   t. the NCCL communicator test (tests/test_nccl next to COIL's build): alone and on N ranks.
#   a. correctness: tiny softmax and tiny 2Mamba (configs/runs/tiny-*.yaml) on byte-level token
#      shards, fp32 and bf16, 1 GPU against dp2, tp2, sp2 (and dp2xtp2, tp2xsp2, dp2xsp2, dpN, spN
#      with 4 or more GPUs) for 8 steps of the same global batch: per-step losses, the worst relative
#      loss and gradient-norm differences, and the final checkpoints' weights (`coil checkpoint
#      compare`: max |a-b| / max |b|, the worst parameter). coil has no gradient dump: the gradient
#      check is the global gradient norm of every step (grad_norm in the metrics) plus the weights
#      after 8 AdamW steps, which every gradient of every step has moved.
#   b. data-parallel weak scaling of the small config (configs/models/$SMALL-small.yaml, T=2048,
#      batch 8 per GPU, bf16): tokens/s per GPU at 1, 2, 4, ... N GPUs and the efficiency.
#   c. tensor parallel tp = 2, 4, ... N of the same config (global batch 8): step time, efficiency.
#   d. long context: 2Mamba small (chunked form, the state chain) with sp = N, batch 1, at the
#      longest T that fits (doubling from 4K per GPU up to 128K, or N x 32K if larger), and softmax
#      small with its K/V all-gather at the same T (else the shortest): tokens/s, peak memory (rank
#      0), bytes communicated per step (rank 0, logging.count_comm).
#   e. multi-node launch: launch/mpi/run_multinode.sh with a hostfile of two "nodes" (nodea, nodeb),
#      each owning half of the GPUs, on this one machine: OpenMPI starts each node's daemon through
#      a stand-in for ssh (OMPI_MCA_plm_rsh_agent, $WORK/fake_ssh) that runs it locally with that
#      node's CUDA_VISIBLE_DEVICES, so every rank has local rank 0..N/2-1 and the NCCL world spans
#      two daemons. Shows the grid and compares the losses with the same layout on one node.
#
# Environment: COIL (required), DEVICE cuda|cpu (default cuda), NGPU (default: nvidia-smi's count;
# cpu: 2 ranks), OUT (logs and summary; default /tmp/coil_multi_gpu), WORK_DIR (scratch; default
# /tmp/coil_multi_gpu_work), PARTS, BUDGET_S (default 450),
# SMALL (default 2mamba); part d: D_MODELS (default "2mamba softmax"), D_TOP (the longest T tried),
# D_EXTRA (more --set arguments). DEVICE=cpu runs every part with tiny models and the MPI backend
# (--oversubscribe) to check this script itself. Exit status: 1 when a correctness check failed.
# With 4 or 8 GPUs part a has 8 or 11 layouts per model and precision: BUDGET_S=900 (4) or 1500 (8)
# runs them all; with less, the runs past each part's share are listed as skipped.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
: "${COIL:?set COIL to a built coil binary, e.g. COIL=/tmp/b/launch/coil}"
COIL="$(readlink -f "$COIL")"
[[ -x "$COIL" ]] || { echo "multi_gpu: COIL=$COIL is not an executable" >&2; exit 2; }
for tool in python3 mpirun timeout; do
  command -v $tool >/dev/null || { echo "multi_gpu: $tool not found (needed to launch and to read the metrics)" >&2; exit 2; }
done
DEVICE=${DEVICE:-cuda}
PARTS=${PARTS:-"t a b c d e"}
BUDGET_S=${BUDGET_S:-450}
SMALL=${SMALL:-2mamba}
OUTDIR=${OUT:-/tmp/coil_multi_gpu}
# Scratch (corpus, checkpoints, metrics, configs) outside $OUT, so that $OUT holds only the logs and
# the summary.
WORK=${WORK_DIR:-/tmp/coil_multi_gpu_work}
# NVLink multicast (NVLS) stays off on these machines: nothing may call cuMulticastCreate.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}
if [[ $DEVICE == cuda ]]; then
  NGPU=${NGPU:-$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')}
  # without nvidia-smi: the device nodes
  [[ "$NGPU" -ge 1 ]] || NGPU=$(find /dev -maxdepth 1 -name 'nvidia[0-9]*' 2>/dev/null | wc -l)
  [[ "$NGPU" -ge 1 ]] || { echo "multi_gpu: no GPU found (nvidia-smi -L); set NGPU or DEVICE=cpu" >&2; exit 2; }
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
else
  NGPU=${NGPU:-2}
  export OMP_NUM_THREADS=1
fi
rm -rf "$WORK"
mkdir -p "$WORK/cfg" "$OUTDIR"
T0=$SECONDS
SUMMARY="$OUTDIR/summary.txt"
: >"$SUMMARY"
FAILED=0
say() { echo "$*" | tee -a "$SUMMARY"; }
# Each part may run until its share of the budget is spent (PART_END, seconds after the start), so
# a slow part cannot starve the later ones: t 6%, a 38%, b 50%, c 58%, d 86%, e the rest.
PART_END=$BUDGET_S
part_until() { PART_END=$((BUDGET_S * $1 / 100)); }
left() {
  local end=$PART_END
  ((end > BUDGET_S)) && end=$BUDGET_S
  echo $((end - (SECONDS - T0)))
}
has_part() { [[ " $PARTS " == *" $1 "* ]]; }

echo "== multi_gpu: $(date -u +%Y-%m-%dT%H:%MZ), coil $COIL, device $DEVICE, $NGPU rank(s), parts '$PARTS', budget ${BUDGET_S}s"
echo "   commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?'), logs in $OUTDIR"
[[ $DEVICE == cuda ]] && nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
mpirun --version 2>/dev/null | head -1

# --- launching -------------------------------------------------------------------------------------
MPI=(mpirun --allow-run-as-root --bind-to none -x NCCL_NVLS_ENABLE -x TORCH_SYMM_MEM_DISABLE_MULTICAST
     -x NVSHMEM_DISABLE_NVLS -x NCCL_DEBUG -x OMP_NUM_THREADS)
[[ $DEVICE == cpu ]] && MPI+=(--oversubscribe)

# train NAME NP TIMEOUT CONFIG [--set ...]: coil train on NP ranks (NP=1: no mpirun), its log in
# $OUTDIR/NAME.log, metrics in $WORK/NAME/metrics.jsonl. Returns coil's status (124: timeout; 99:
# skipped, the time budget is spent).
train() {
  local name=$1 np=$2 tmo=$3 cfg=$4
  shift 4
  local budget
  budget=$(($(left) - 5))
  ((tmo > budget)) && tmo=$budget
  if ((tmo < 15)); then
    echo "   $name: skipped (this part's share of the ${BUDGET_S}s budget is spent)" | tee "$OUTDIR/$name.log"
    return 99
  fi
  local launcher=()
  ((np > 1)) && launcher=("${MPI[@]}" -np "$np")
  mkdir -p "$WORK/$name"
  local t=$SECONDS
  timeout -k 10 "$tmo" "${launcher[@]}" "$COIL" train --config "$cfg" --set train.device="$DEVICE" \
    --set checkpoint.dir="$WORK/$name/ckpt" --set logging.jsonl="$WORK/$name/metrics.jsonl" \
    --set logging.count_comm=true "$@" >"$OUTDIR/$name.log" 2>&1
  local rc=$?
  local status="ok"
  ((rc == 124 || rc == 137)) && status="TIMEOUT after ${tmo}s"
  ((rc != 0 && rc != 124 && rc != 137)) && status="FAILED rc=$rc: $(grep -m1 -iE 'error|out of memory' "$OUTDIR/$name.log" | cut -c1-200)"
  echo "   $name ($np rank(s), $((SECONDS - t))s): $status"
  ((rc != 0)) && tail -n 4 "$OUTDIR/$name.log" | cut -c1-240 | sed 's/^/      | /'
  return $rc
}

# metrics NAME: "tok_s peak_mem_bytes comm_bytes_per_step step_ms" from the steps after the first
# three (warm-up), medians; "- - - -" when the run wrote nothing.
metrics() {
  python3 - "$WORK/$1/metrics.jsonl" <<'PY'
import json, os, statistics, sys
p = sys.argv[1]
rows = [json.loads(l) for l in open(p)] if os.path.exists(p) else []
if not rows:
    print("- - - -"); sys.exit()
late = [r for r in rows if r["step"] > 3] or rows
tok = statistics.median(r["tokens_per_s"] for r in late)
peak = max(r["peak_mem_bytes"] for r in rows)
comm = statistics.median(r.get("comm_bytes_per_step", 0) for r in late)
tokens_per_step = rows[-1]["tokens"] / rows[-1]["step"]
print(f"{tok:.0f} {peak} {comm:.0f} {1000 * tokens_per_step / tok:.1f}")
PY
}
gib() { python3 -c "import sys; v=sys.argv[1]; print(v if v == '-' else f'{int(v)/2**30:.2f} GiB')" "$1"; }
mib() { python3 -c "import sys; v=sys.argv[1]; print(v if v == '-' else f'{float(v)/2**20:.1f} MiB')" "$1"; }

# --- t. the NCCL communicator's own test (tests/parallel/nccl_mpi), alone and on every GPU ------------
if has_part t; then
  part_until 6
  say ""
  say "== t. test_nccl (collectives on CUDA tensors against known values, f32 / bf16)"
  tbin=$(dirname "$COIL")/../tests/test_nccl
  if [[ ! -x $tbin ]]; then
    say "t  test_nccl not built next to COIL ($tbin): ninja -C $(dirname "$(dirname "$COIL")") test_nccl"
  else
    for np in 1 "$NGPU"; do
      launcher=()
      ((np > 1)) && launcher=("${MPI[@]}" -np "$np")
      tmo=$(($(left) - 5)); ((tmo > 60)) && tmo=60; ((tmo < 10)) && tmo=10
      # NCCL_DEBUG=VERSION: the log names the NCCL library in use (for the records).
      NCCL_DEBUG=VERSION timeout -k 5 "$tmo" "${launcher[@]}" "$tbin" --gtest_color=no \
        >"$OUTDIR/t-nccl-np$np.log" 2>&1
      rc=$?
      grep -m1 -o "NCCL version [^ ]*" "$OUTDIR/t-nccl-np$np.log" | sed 's/^/t  /' | tee -a "$SUMMARY"
      ((rc != 0)) && FAILED=1
      say "t  np $np: rc $rc, $(grep -E '^\[  (PASSED|FAILED) +\] [0-9]+ test|^\[  SKIPPED \] [0-9]+ test' "$OUTDIR/t-nccl-np$np.log" | tr '\n' ' ')"
      grep -m1 "all tests skipped" "$OUTDIR/t-nccl-np$np.log" | sed 's/^/   /'
      ((np == NGPU)) && break
    done
  fi
fi

# --- a. correctness -----------------------------------------------------------------------------------
# layouts: NAME:dp:tp:sp:zero1[:alt] (ZeRO-1: the reduce-scatter / all-gather of the sharded AdamW;
# alt: sp in the other style, parallel.sp_style gather for 2Mamba (auto is its state chain), ring
# for softmax (auto is its K, V all-gather))
layouts_for() {
  local n=$1
  local l=("dp2:2:1:1:0" "tp2:1:2:1:0" "sp2:1:1:2:0" "sp2-alt:1:1:2:0:alt" "dp2-zero1:2:1:1:1")
  if ((n >= 4)); then
    l+=("dp2xtp2:2:2:1:0" "tp2xsp2:1:2:2:0" "dp2xsp2:2:1:2:0" "dp4:4:1:1:0" "sp4:1:1:4:0"
        "dp2xsp2-zero1:2:1:2:1")
  fi
  if ((n >= 8)); then l+=("dp2xtp2xsp2:2:2:2:0" "dp8:8:1:1:0" "tp4xsp2:1:4:2:0"); fi
  echo "${l[@]}"
}

# compare_runs REF RUN THRESHOLD: per-step loss / grad_norm and final weights of RUN against REF.
# Prints "loss=… gnorm=… weights=… ok|FAIL" and returns 1 past THRESHOLD (on the losses).
compare_runs() {
  python3 - "$WORK/$1" "$WORK/$2" "$3" "$COIL" <<'PY'
import glob, json, os, subprocess, sys
ref, run, thr, coil = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
def load(d):
    p = os.path.join(d, "metrics.jsonl")
    rows = {}
    for line in open(p) if os.path.exists(p) else []:
        try:
            r = json.loads(line)
            rows[r["step"]] = r
        except (ValueError, KeyError):
            pass  # a line cut short by a killed run
    return rows
a, b = load(ref), load(run)
if not a or not b or sorted(a) != sorted(b):
    print(f"steps {sorted(b)} vs {sorted(a)} FAIL"); sys.exit(1)
rel = lambda x, y: abs(x - y) / max(abs(y), 1e-30)
loss = max(rel(b[s]["loss"], a[s]["loss"]) for s in a)
ev = [rel(b[s]["eval_loss"], a[s]["eval_loss"]) for s in a if "eval_loss" in a[s] and "eval_loss" in b[s]]
loss = max([loss] + ev)
gn = max(rel(b[s]["grad_norm"], a[s]["grad_norm"]) for s in a)
w = "n/a (no checkpoint)"
fa = sorted(glob.glob(os.path.join(ref, "ckpt", "step_*.h5")))
fb = sorted(glob.glob(os.path.join(run, "ckpt", "step_*.h5")))
if fa and fb:
    # coil reads both through its checkpoint checks: max |a - b| / max |b| of every parameter.
    try:
        r = subprocess.run([coil, "checkpoint", "compare", fb[-1], fa[-1]], capture_output=True, text=True,
                           timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        r = subprocess.CompletedProcess([], 1, "", str(e))
    last = (r.stdout.strip().splitlines() or ["?"])[-1].split()
    if r.returncode == 0 and len(last) == 3 and last[0] == "worst":
        w = f"{float(last[1]):.2e} ({last[2]})"
    else:
        w = "compare failed: " + " ".join((r.stderr.strip() or r.stdout.strip() or "?").split())[:120]
ok = loss <= thr
print(f"loss {loss:.2e}  gnorm {gn:.2e}  weights {w}  {'ok' if ok else 'FAIL'} (loss limit {thr:g})")
sys.exit(0 if ok else 1)
PY
}

# per_step_table REF RUN...: the losses of every step side by side.
per_step_table() {
  python3 - "$WORK" "$@" <<'PY'
import json, os, sys
work, names = sys.argv[1], sys.argv[2:]
cols = {}
for n in names:
    p = os.path.join(work, n, "metrics.jsonl")
    cols[n] = {r["step"]: r["loss"] for r in map(json.loads, open(p))} if os.path.exists(p) else {}
steps = sorted(set().union(*[set(c) for c in cols.values()]))
short = [n.split("-")[-1] for n in names]
print("     step " + "".join(f"{s:>12}" for s in short))
for s in steps:
    print(f"     {s:4d} " + "".join(f"{cols[n][s]:12.6f}" if s in cols[n] else f"{'-':>12}" for n in names))
PY
}

if has_part a; then
  part_until 38
  say ""
  say "== a. correctness on $([[ $DEVICE == cuda ]] && echo real NCCL || echo MPI/CPU): 1 rank vs layouts, 8 steps, global batch 8 x 64"
  # The trainer tests' corpus: documents of varied length, byte-tokenized (vocab 259; 264 divides
  # by tp = 2, 4, 8).
  COIL_SAVED=$COIL
  source "$ROOT/tests/trainer/train_mpi_lib.sh"
  make_byte_shards 5 400 40 || { say "a: corpus preparation failed"; FAILED=1; }
  common=(--set model.vocab=264 --set data.kind=shards --set data.dir="$WORK/tok" --set data.train=train
          --set data.eval=heldout --set data.mode=packed --set train.steps=8 --set train.batch_size=8
          --set train.seq_len=64 --set train.eval_every=8 --set train.eval_batches=2 --set train.log_every=1
          --set schedule.warmup=2 --set checkpoint.keep_last=1)
  precisions="fp32 bf16"
  [[ $DEVICE == cpu ]] && precisions="fp32"
  for model in softmax 2mamba; do
    for prec in $precisions; do
      # fp32: only the order of the reductions differs (runs drift apart by ~1e-5..1e-4 over 8
      # AdamW steps, tests/trainer/layout_resume_mpi_test.sh); bf16: the roundings of bf16 GEMM
      # inputs differ with the split, a few 1e-3 (docs/PERFORMANCE.md, bf16 vs fp32 checks).
      thr=1e-4
      [[ $prec == bf16 ]] && thr=2e-2
      ref="a-$model-$prec-1"
      train "$ref" 1 60 "$ROOT/configs/runs/tiny-$model.yaml" "${common[@]}" --set precision=$prec || true
      runs=("$ref")
      for lay in $(layouts_for "$NGPU"); do
        IFS=: read -r lname dp tp sp z1 alt <<<"$lay"
        ((dp * tp * sp <= NGPU)) || continue
        style=auto
        [[ ${alt:-} == alt ]] && { [[ $model == softmax ]] && style=ring || style=gather; }
        name="a-$model-$prec-$lname"
        train "$name" $((dp * tp * sp)) 60 "$ROOT/configs/runs/tiny-$model.yaml" "${common[@]}" \
          --set precision=$prec --set parallel.dp=$dp --set parallel.tp=$tp --set parallel.sp=$sp \
          --set parallel.zero1=$([[ $z1 == 1 ]] && echo true || echo false) --set parallel.sp_style=$style
        rc=$?
        ((rc == 99)) && continue
        runs+=("$name")
        res=$(compare_runs "$ref" "$name" "$thr") || FAILED=1
        say "a  $model $prec $(printf '%-12s' "$lname") $res"
        [[ $lname == dp2 || $lname == sp2* ]] && grep -m1 "^run " "$OUTDIR/$name.log" | sed 's/^/     banner: /'
      done
      per_step_table "${runs[@]}"
    done
  done
  COIL=$COIL_SAVED
fi

# --- run configs of the perf parts -------------------------------------------------------------------
# perf_config MODEL FILE: the model file of configs/models plus the run sections (synthetic tokens).
perf_config() {
  local model=$1 file=$2
  if [[ $DEVICE == cuda ]]; then
    grep -v '^#' "$ROOT/configs/models/$model-small.yaml" >"$file"
  else
    grep -v '^#' "$ROOT/configs/models/$model-tiny.yaml" >"$file"
  fi
  cat >>"$file" <<EOF
name: mg-$model
data: {kind: synthetic, period: 64, seed: 1, eval_seed: 2}
optim: {lr: 3.0e-4, betas: [0.9, 0.95], eps: 1.0e-8, weight_decay: 0.1, clip: 1.0}
schedule: {kind: constant, warmup: 0, decay_end_step: 0, final_lr: 0}
train: {steps: 10, batch_size: 8, seq_len: 2048, grad_accum: 1, seed: 0, eval_every: 0, eval_batches: 1,
        log_every: 1, nan_tolerance: 5, device: $DEVICE}
precision: $([[ $DEVICE == cuda ]] && echo bf16 || echo fp32)
parallel: {dp: 1, tp: 1, sp: 1}
checkpoint: {dir: unused, every: 0, keep_last: 1, at_end: false}
logging: {jsonl: unused, peak_tflops: 989}
EOF
}
if [[ $DEVICE == cuda ]]; then SEQ=2048; else SEQ=64; fi
pow2_upto() { local n=1 out=""; while ((n <= $1)); do out+="$n "; n=$((n * 2)); done; echo "$out"; }

# --- b. data-parallel weak scaling ---------------------------------------------------------------------
if has_part b; then
  part_until 50
  say ""
  say "== b. data-parallel weak scaling: $SMALL $([[ $DEVICE == cuda ]] && echo small || echo tiny), T=$SEQ, batch 8 per GPU, $([[ $DEVICE == cuda ]] && echo bf16 || echo fp32)"
  cfg="$WORK/cfg/b-$SMALL.yaml"
  perf_config "$SMALL" "$cfg"
  form=()
  [[ $SMALL == 2mamba || $SMALL == linear ]] && form=(--set model.linear.form=quadratic)
  say "b  GPUs   tokens/s   tokens/s/GPU   step ms   efficiency   comm/step   peak mem"
  base=""
  for n in $(pow2_upto "$NGPU"); do
    train "b-dp$n" "$n" 150 "$cfg" "${form[@]}" --set train.seq_len=$SEQ --set train.batch_size=$((8 * n)) \
      --set parallel.dp=$n
    rc=$?
    read -r tok peak comm ms <<<"$(metrics "b-dp$n")"
    if [[ $rc != 0 || $tok == - ]]; then say "b  $n      (no result, rc $rc: $OUTDIR/b-dp$n.log)"; continue; fi
    per=$((tok / n))
    [[ -z $base ]] && base=$per
    say "$(printf 'b  %-5s %10s %14s %9s %11s %11s %10s' "$n" "$tok" "$per" "$ms" \
      "$(python3 -c "print(f'{100*$per/$base:.1f}%')")" "$(mib "$comm")" "$(gib "$peak")")"
  done
fi

# --- c. tensor parallel ---------------------------------------------------------------------------------
if has_part c; then
  part_until 58
  say ""
  say "== c. tensor parallel: $SMALL, T=$SEQ, global batch 8"
  cfg="$WORK/cfg/c-$SMALL.yaml"
  perf_config "$SMALL" "$cfg"
  form=()
  [[ $SMALL == 2mamba || $SMALL == linear ]] && form=(--set model.linear.form=quadratic)
  say "c  tp   step ms   tokens/s   speed-up   efficiency   comm/step   peak mem"
  base=""
  for n in $(pow2_upto "$NGPU"); do
    name="c-tp$n"
    # tp1 is part b's one-GPU run when it exists (the same config and batch).
    rc=0
    if ((n == 1)) && grep -qE '^b  1 +[0-9]' "$SUMMARY"; then
      name="b-dp1"
    else
      train "$name" "$n" 150 "$cfg" "${form[@]}" --set train.seq_len=$SEQ --set parallel.tp=$n
      rc=$?
    fi
    read -r tok peak comm ms <<<"$(metrics "$name")"
    if [[ $rc != 0 || $tok == - ]]; then say "c  $n    (no result, rc $rc: $OUTDIR/$name.log)"; continue; fi
    [[ -z $base ]] && base=$ms
    say "$(printf 'c  %-4s %8s %10s %10s %12s %11s %10s' "$n" "$ms" "$tok" \
      "$(python3 -c "print(f'{$base/$ms:.2f}x')")" "$(python3 -c "print(f'{100*$base/$ms/$n:.1f}%')")" \
      "$(mib "$comm")" "$(gib "$peak")")"
  done
fi

# --- d. long context -----------------------------------------------------------------------------------
if has_part d && ((NGPU >= 2)); then
  part_until 86
  say ""
  say "== d. long context: sp=$NGPU, batch 1 (rank 0's peak memory and bytes per step)"
  say "d  model     T        T/GPU    step ms   tokens/s   peak mem   comm/step"
  if [[ $DEVICE == cuda ]]; then
    floor=$((NGPU * 4096)); top=$((NGPU * 32768)); ((top < 131072)) && top=131072
    top=${D_TOP:-$top}
  else
    floor=$((NGPU * 64)); top=$((NGPU * 512))
  fi
  best=""
  for model in ${D_MODELS:-2mamba softmax}; do
    cfg="$WORK/cfg/d-$model.yaml"
    perf_config "$model" "$cfg"
    # parallel.sp_style auto: the state chain for 2Mamba, the K, V all-gather for softmax. D_EXTRA:
    # more --set arguments for both (e.g. "--set model.recompute=true").
    extra=(--set train.batch_size=1 --set train.steps=4 --set parallel.sp=$NGPU ${D_EXTRA:-})
    [[ $model == 2mamba ]] && extra+=(--set model.linear.form=chunked)
    # 2Mamba: doubling T from 4K per GPU while it fits and runs in time, up to D_TOP (default 128K,
    # or 32K per GPU if larger): its chunked form keeps the chunk states of the whole shard for
    # backward, so the longest T is found from below (a failed try costs a start-up, a run that
    # fits a full measurement). Softmax: 2Mamba's longest T with less time, then the shortest, so
    # the table has a softmax row at all.
    if [[ $model == 2mamba ]]; then
      tries=()
      T=$floor
      while ((T <= top)); do tries+=("$T"); T=$((T * 2)); done
      tmo=100
    else
      tries=("${best:-$floor}")
      [[ ${best:-$floor} != "$floor" ]] && tries+=("$floor")
      tmo=75
    fi
    for T in "${tries[@]}"; do
      # keep about a minute of the part's share for the softmax rows
      if [[ $model == 2mamba && -n $best ]] && (($(left) < 60)); then
        say "d  2mamba   $T: not tried (the part's time share is kept for softmax)"
        break
      fi
      name="d-$model-T$T"
      train "$name" "$NGPU" "$tmo" "$cfg" "${extra[@]}" --set train.seq_len=$T
      rc=$?
      ((rc == 99)) && break
      read -r tok peak comm ms <<<"$(metrics "$name")"
      if [[ $rc == 0 && $tok != - ]]; then
        say "$(printf 'd  %-8s %-8s %-8s %9s %10s %10s %11s' "$model" "$T" "$((T / NGPU))" "$ms" "$tok" \
          "$(gib "$peak")" "$(mib "$comm")")"
        [[ $model == softmax ]] && break
        best=$T
        continue
      fi
      why=$(grep -m1 -ioE 'out of memory|error[^|]{0,120}' "$OUTDIR/$name.log" || true)
      ((rc == 124 || rc == 137)) && why="timeout after ${tmo}s"
      say "d  $model    $T: did not run (${why:-rc $rc})"
      [[ $model == 2mamba ]] && break
    done
  done
  [[ -n $best ]] && say "d  longest 2Mamba T that ran: $best ($((best / NGPU)) per GPU)"
  # The sequence split's own cost: one GPU on one shard's length (the same tokens per GPU) against the
  # sp run at the shortest T, for 2Mamba. The chain pipelines the ranks layer by layer, so its step
  # is the shard's step plus about (sp - 1) layers' worth of waiting, plus the state messages.
  if [[ " ${D_MODELS:-2mamba softmax} " == *" 2mamba "* ]] && (($(left) >= 30)); then
    cfg="$WORK/cfg/d-2mamba.yaml"
    ref=(--set train.batch_size=1 --set train.steps=4 --set model.linear.form=chunked ${D_EXTRA:-})
    train "d-2mamba-1gpu-T$((floor / NGPU))" 1 60 "$cfg" "${ref[@]}" --set train.seq_len=$((floor / NGPU))
    read -r tok1 peak1 comm1 ms1 <<<"$(metrics "d-2mamba-1gpu-T$((floor / NGPU))")"
    read -r tokn peakn commn msn <<<"$(metrics "d-2mamba-T$floor")"
    if [[ $ms1 != - && $msn != - ]]; then
      say "$(printf 'd  2mamba 1 GPU at T=%s: %s ms (%s); sp=%s at T=%s: %s ms, so the split costs %s' \
        "$((floor / NGPU))" "$ms1" "$(gib "$peak1")" "$NGPU" "$floor" "$msn" \
        "$(python3 -c "print(f'{$msn/$ms1:.2f}x the shard alone')")")"
    fi
  fi
fi

# --- e. multi-node launch --------------------------------------------------------------------------------
if has_part e && ((NGPU >= 2 && NGPU % 2 == 0)); then
  part_until 100
  say ""
  half=$((NGPU / 2))
  say "== e. multi-node launch: launch/mpi/run_multinode.sh, hostfile nodea/nodeb with $half GPU(s) each"
  gpus=${CUDA_VISIBLE_DEVICES:-$(seq -s, 0 $((NGPU - 1)))}
  IFS=, read -r -a glist <<<"$gpus"
  cat >"$WORK/fake_ssh" <<EOF
#!/usr/bin/env bash
# Stand-in for ssh (OMPI_MCA_plm_rsh_agent): drops ssh's options, takes the host name, runs the
# daemon's command here with that "node's" GPUs (nodea: the first half, nodeb: the second).
while [[ \$# -gt 0 && "\$1" == -* ]]; do
  case "\$1" in -x|-T|-n|-q|-a|-A|-X|-Y|-t|-tt) shift ;; *) shift 2 ;; esac
done
host=\$1; shift
case "\$host" in
  nodea) export CUDA_VISIBLE_DEVICES="${glist[*]:0:$half}" ;;
  nodeb) export CUDA_VISIBLE_DEVICES="${glist[*]:$half:$half}" ;;
esac
export CUDA_VISIBLE_DEVICES="\${CUDA_VISIBLE_DEVICES// /,}"
# Each "node" its own temporary directory: the daemons of one host would otherwise race to make the
# same Open MPI session directory tree.
export TMPDIR="$WORK/tmp-\$host"
mkdir -p "\$TMPDIR"
echo "fake_ssh: \$host CUDA_VISIBLE_DEVICES=\$CUDA_VISIBLE_DEVICES TMPDIR=\$TMPDIR" >>"$WORK/fake_ssh.log"
exec /bin/sh -c "\$*"
EOF
  chmod +x "$WORK/fake_ssh"
  printf 'nodea slots=%d\nnodeb slots=%d\n' "$half" "$half" >"$WORK/hosts"
  # The layout: dp2 across the two nodes, tp inside each (the default grid order keeps tp innermost).
  lay=(--set parallel.dp=2 --set parallel.tp=$half)
  [[ -d "$WORK/tok" ]] || { source "$ROOT/tests/trainer/train_mpi_lib.sh"; make_byte_shards 5 400 40; }
  ecommon=(--set model.vocab=264 --set data.kind=shards --set data.dir="$WORK/tok" --set data.train=train
           --set data.eval=heldout --set data.mode=packed --set train.steps=8 --set train.batch_size=8
           --set train.seq_len=64 --set train.eval_every=8 --set train.eval_batches=2 --set train.log_every=1
           --set schedule.warmup=2 --set checkpoint.keep_last=1 --set train.device=$DEVICE)
  cfg="$ROOT/configs/runs/tiny-softmax.yaml"
  train "e-one-node" "$NGPU" 90 "$cfg" "${ecommon[@]}" "${lay[@]}"
  dry=$(dirname "$COIL")/../parallel/coil_grid_dryrun
  [[ -x $dry ]] && export COIL_GRID_DRYRUN=$dry
  "$ROOT/launch/mpi/run_multinode.sh" --hostfile "$WORK/hosts" --gpus-per-node "$half" --dry-run \
    --dp 2 --tp "$half" 2>&1 | tee "$OUTDIR/e-grid.log" | sed 's/^/   /'
  mkdir -p "$WORK/e-two-nodes"
  budget=$(($(left) - 5))
  ((budget > 120)) && budget=120
  if ((budget >= 15)); then
    t=$SECONDS
    # CUDA_VISIBLE_DEVICES is the stand-in's to set per node (run_multinode.sh forwards CUDA_*).
    # The launcher of remote daemons: plm_rsh_agent (Open MPI 4), plm_ssh_agent (5, PRRTE).
    # The launcher itself is named too: a machine may preset one that starts no remote daemons (the
    # GPU machines export OMPI_MCA_plm=isolated, and mpirun then reports "All nodes which are
    # allocated for this job are already filled").
    agent=(OMPI_MCA_plm=rsh OMPI_MCA_plm_rsh_agent="$WORK/fake_ssh")
    mpirun --version 2>/dev/null | grep -qE 'Open MPI\) [5-9]' &&
      agent=(PRTE_MCA_plm=ssh PRTE_MCA_plm_ssh_agent="$WORK/fake_ssh" OMPI_MCA_plm_ssh_agent="$WORK/fake_ssh")
    # Both "nodes" are this host: Open MPI's shared-memory transport would name the segments of
    # nodea's and nodeb's local rank 0 alike (same host name) and corrupt them, so the host-side MPI
    # traffic (bootstrap, metrics) goes over TCP, as between real nodes; NCCL picks its own transport.
    agent+=(OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,tcp)
    env -u CUDA_VISIBLE_DEVICES "${agent[@]}" \
      timeout -k 10 "$budget" "$ROOT/launch/mpi/run_multinode.sh" --hostfile "$WORK/hosts" \
      --gpus-per-node "$half" "$COIL" train --config "$cfg" "${ecommon[@]}" "${lay[@]}" \
      --set checkpoint.dir="$WORK/e-two-nodes/ckpt" --set logging.jsonl="$WORK/e-two-nodes/metrics.jsonl" \
      >"$OUTDIR/e-two-nodes.log" 2>&1
    rc=$?
    echo "   e-two-nodes ($NGPU ranks on 2 'nodes', $((SECONDS - t))s): rc $rc"
    ((rc != 0)) && tail -n 25 "$OUTDIR/e-two-nodes.log" | cut -c1-240 | sed 's/^/      | /'
    sed 's/^/   /' "$WORK/fake_ssh.log" 2>/dev/null
    grep -m1 "^run " "$OUTDIR/e-two-nodes.log" | sed 's/^/   banner: /'
    res=$(compare_runs "e-one-node" "e-two-nodes" 1e-5) || FAILED=1
    say "e  two nodes vs one node (dp2 x tp$half, tiny softmax fp32): $res"
  else
    say "e  two nodes: skipped (the ${BUDGET_S}s budget is spent)"
  fi
fi

echo
echo "== summary ($(date -u +%Y-%m-%dT%H:%MZ), $DEVICE, $NGPU rank(s), $((SECONDS - T0))s; $SUMMARY)"
cat "$SUMMARY"
((FAILED)) && echo "multi_gpu: at least one correctness check FAILED (logs in $OUTDIR)"
exit $FAILED
