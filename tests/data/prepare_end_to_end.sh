#!/usr/bin/env bash
# End to end on a small capped corpus: coil data prepare -> coil tokenizer train (when coil has
# SentencePiece) -> coil data tokenize -> coil data info. Installs missing Debian packages / npm
# tarballs like the real command (CI can reach both). Exit 77 (skipped) without python3.
#   bash tests/data/prepare_end_to_end.sh BUILD/launch/coil WORKDIR
set -euo pipefail
COIL=$1
WORK=$2
command -v python3 >/dev/null || { echo "python3 not found: skipped"; exit 77; }
rm -rf "$WORK"
mkdir -p "$WORK"
export COIL_CACHE_DIR="$WORK/../data_e2e_cache"
start=$(date +%s)
"$COIL" data prepare --out "$WORK/corpus" --max-mb 2 --seed 1
python3 - "$WORK/corpus" <<'PY'
import json, sys
d = sys.argv[1]
m = json.load(open(f"{d}/manifest.json"))
ok = [s["name"] for s in m["sources"] if s["status"] == "ok"]
print("sources ok:", ", ".join(ok))
assert m["files"]["train"]["docs"] > 100 and m["files"]["heldout"]["docs"] >= 1, m["files"]
assert m["files"]["train"]["bytes"] <= 2.0e6, m["files"]
assert len(ok) >= 1
keys = set()
for split in ("train", "heldout"):
    for line in open(f"{d}/{split}.jsonl"):
        doc = json.loads(line)
        assert doc["text"].strip() and doc["source"] in ok
        k = " ".join(doc["text"].lower().split())
        assert k not in keys, "duplicate document"
        keys.add(k)
PY
tokenizer=bytes
if "$COIL" tokenizer train --corpus "$WORK/corpus" --vocab 2000 --out "$WORK/tok/spm" 2>"$WORK/spm.err"; then
  tokenizer="$WORK/tok/spm.model"
elif grep -q "without SentencePiece" "$WORK/spm.err"; then
  echo "coil has no SentencePiece: using the byte tokenizer"
else
  cat "$WORK/spm.err" >&2
  exit 1
fi
"$COIL" data tokenize --corpus "$WORK/corpus" --tokenizer "$tokenizer" --out "$WORK/shards"
"$COIL" data info "$WORK/shards"
echo "end to end: $(( $(date +%s) - start )) s"
