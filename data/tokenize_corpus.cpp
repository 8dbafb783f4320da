// Corpus -> shards. Documents are read in batches and encoded by a few threads (encode() is const and
// thread-safe for both tokenizers), then written in corpus order, so the output does not depend on the
// thread count.
#include "data/tokenize_corpus.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <ostream>
#include <thread>

#include "core/error.h"
#include "data/corpus.h"
#include "data/dataset.h"
#include "data/shard.h"

namespace coil {
namespace {

namespace fs = std::filesystem;

constexpr size_t kBatchDocs = 2048;

void encode_batch(const Tokenizer& tok, const std::vector<std::string>& texts,
                  std::vector<std::vector<int32_t>>& out, int threads) {
  out.assign(texts.size(), {});
  const int n = std::max(1, std::min<int>(threads, int(texts.size())));
  std::vector<std::thread> pool;
  std::vector<std::exception_ptr> errors(static_cast<size_t>(n));
  for (int t = 0; t < n; ++t) {
    pool.emplace_back([&, t] {
      try {
        for (size_t i = size_t(t); i < texts.size(); i += size_t(n)) out[i] = tok.encode(texts[i]);
      } catch (...) {
        errors[size_t(t)] = std::current_exception();
      }
    });
  }
  for (auto& th : pool) th.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace

std::vector<TokenizeSplitReport> tokenize_corpus(const Tokenizer& tok, const TokenizeOptions& opt,
                                                 std::ostream& log) {
  COIL_CHECK(opt.shard_tokens > 0, "tokenize: shard size must be > 0 tokens");
  COIL_CHECK(!opt.out_dir.empty(), "tokenize: an output directory is required");
  std::vector<std::string> inputs;
  for (const auto& split : opt.splits) inputs.push_back(corpus_split_path(opt.corpus_dir, split));
  fs::create_directories(opt.out_dir);
  const int threads = opt.threads > 0 ? opt.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  std::vector<TokenizeSplitReport> reports;
  for (size_t s = 0; s < opt.splits.size(); ++s) {
    const std::string& split = opt.splits[s];
    const auto t0 = std::chrono::steady_clock::now();
    TokenizeSplitReport rep;
    rep.split = split;
    std::vector<ShardIndexEntry> index;
    std::unique_ptr<ShardWriter> writer;
    auto close_shard = [&] {
      if (!writer) return;
      writer->finish();
      index.push_back({fs::path(writer->path()).filename().string(), writer->num_tokens(), writer->num_docs()});
      writer.reset();
    };
    std::vector<std::string> texts;
    std::vector<std::vector<int32_t>> encoded;
    auto flush = [&] {
      encode_batch(tok, texts, encoded, threads);
      for (const auto& ids : encoded) {
        if (writer && writer->num_tokens() > 0 && writer->num_tokens() + ids.size() > opt.shard_tokens)
          close_shard();
        if (!writer) {
          char name[64];
          std::snprintf(name, sizeof name, "%s-%05zu.bin", split.c_str(), index.size());
          writer = std::make_unique<ShardWriter>((fs::path(opt.out_dir) / name).string(), tok.id(),
                                                 uint32_t(tok.vocab_size()), tok.bos_id(), tok.eos_id(),
                                                 tok.pad_id());
        }
        writer->add_document(ids);
        rep.tokens += ids.size();
      }
      texts.clear();
    };
    rep.docs = uint64_t(for_each_document(inputs[s], [&](CorpusDocument&& d) {
      rep.text_bytes += d.text.size();
      texts.push_back(std::move(d.text));
      if (texts.size() == kBatchDocs) flush();
    }));
    flush();
    if (!writer && index.empty()) {  // an empty split still gets one (empty) shard
      writer = std::make_unique<ShardWriter>((fs::path(opt.out_dir) / (split + "-00000.bin")).string(),
                                             tok.id(), uint32_t(tok.vocab_size()), tok.bos_id(),
                                             tok.eos_id(), tok.pad_id());
    }
    close_shard();
    write_shard_index(opt.out_dir, split, tok.id(), index);
    rep.shards = index.size();
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    log << "tokenize: " << split << ": " << rep.docs << " documents, " << rep.text_bytes << " bytes -> "
        << rep.tokens << " tokens (" << (rep.tokens ? double(rep.text_bytes) / double(rep.tokens) : 0.0)
        << " bytes/token) in " << rep.shards << " shard(s), " << rep.seconds << " s\n" << std::flush;
    reports.push_back(rep);
  }
  return reports;
}

}  // namespace coil
