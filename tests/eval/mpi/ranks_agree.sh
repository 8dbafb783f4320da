#!/usr/bin/env bash
# `coil eval` under mpirun -np 2 gives exactly the results of one rank (examples split over the ranks,
# per-example records summed). usage: ranks_agree.sh EVAL_CLI MPIEXEC WORKDIR
set -euo pipefail
cli=$1 mpiexec=$2 dir=$3
rm -rf "$dir" && mkdir -p "$dir"
ckpt=$("$cli" fixture "$dir" | tail -n 1)
# Every task but decode (its tokens/s is a timing): small sizes, an odd example count so the ranks'
# shares differ.
args=(--checkpoint "$ckpt" --data "$dir/shards" --limit 5 --seq-len 32 --heldout-tokens 300
      --tasks heldout,passkey,mqar,phonebook,phonebook_reversed,lm-eval
      --passkey-lengths 96,128 --passkey-depths 0,1 --passkey-samples 3 --mqar-samples 5 --mqar-pairs 4
      --phonebook-entries 3 --phonebook-samples 5 --max-length 256)
"$cli" "${args[@]}" --out "$dir/one.json" > "$dir/one.log"
"$mpiexec" --allow-run-as-root --oversubscribe -np 2 "$cli" "${args[@]}" --out "$dir/two.json" > "$dir/two.log"
grep -q '"ranks": 2' "$dir/two.json" || { echo "the mpirun run did not use 2 ranks"; cat "$dir/two.log"; exit 1; }
"$cli" same-results "$dir/one.json" "$dir/two.json"
