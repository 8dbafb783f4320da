// SentencePiece training and encoding through libsentencepiece. In a build without it (GPU nodes)
// every entry point throws coil::Error saying coil was built without SentencePiece.
#include "data/sentencepiece_tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <ostream>
#include <thread>
#include <unordered_map>
#include <vector>

#include "core/error.h"
#include "data/corpus.h"

#if COIL_HAVE_SENTENCEPIECE
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>
#endif

namespace coil {

#if !COIL_HAVE_SENTENCEPIECE

bool have_sentencepiece() { return false; }

std::string train_sentencepiece(const SentencePieceTrainOptions&, std::ostream&) {
  COIL_FAIL("coil was built without SentencePiece (libsentencepiece-dev not found, or "
            "COIL_SENTENCEPIECE=OFF): cannot train a tokenizer; use the byte tokenizer ('bytes')");
}

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path) {
  COIL_FAIL("cannot load tokenizer '", path, "': coil was built without SentencePiece (use 'bytes', "
            "or rebuild with libsentencepiece-dev installed)");
}

#else

bool have_sentencepiece() { return true; }

namespace {

namespace fs = std::filesystem;

// Feeds the corpus to the trainer one line at a time. SentencePiece drops sentences longer than
// max_sentence_length, so long lines (whole speeches are one line) are cut at spaces.
class CorpusLines : public sentencepiece::SentenceIterator {
 public:
  explicit CorpusLines(const std::string& path) {
    for_each_document(path, [this](CorpusDocument&& d) {
      size_t start = 0;
      while (start <= d.text.size()) {
        size_t end = d.text.find('\n', start);
        if (end == std::string::npos) end = d.text.size();
        add_line(std::string_view(d.text).substr(start, end - start));
        start = end + 1;
      }
    });
  }
  bool done() const override { return pos_ >= lines_.size(); }
  void Next() override { ++pos_; }
  const std::string& value() const override { return lines_[pos_]; }
  sentencepiece::util::Status status() const override { return {}; }
  size_t size() const { return lines_.size(); }

 private:
  static constexpr size_t kMaxLine = 2048;  // bytes; SentencePiece's default limit is 4192
  void add_line(std::string_view l) {
    while (l.size() > kMaxLine) {
      size_t cut = l.rfind(' ', kMaxLine);
      if (cut == std::string_view::npos || cut == 0) cut = kMaxLine;
      while (cut > 0 && (static_cast<unsigned char>(l[cut]) & 0xC0) == 0x80) --cut;  // UTF-8 boundary
      if (cut == 0) cut = kMaxLine;
      lines_.emplace_back(l.substr(0, cut));
      l.remove_prefix(cut);
    }
    if (!l.empty()) lines_.emplace_back(l);
  }
  std::vector<std::string> lines_;
  size_t pos_ = 0;
};

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(const std::string& path) {
    COIL_CHECK(fs::is_regular_file(path), "tokenizer model '", path, "' does not exist");
    const auto st = sp_.Load(path);
    COIL_CHECK(st.ok(), "cannot load SentencePiece model '", path, "': ", st.ToString());
    vocab_ = sp_.GetPieceSize();
    eos_ = sp_.eos_id() >= 0 ? sp_.eos_id() : 0;
    bos_ = sp_.bos_id() >= 0 ? sp_.bos_id() : eos_;
    pad_ = sp_.pad_id() >= 0 ? sp_.pad_id() : eos_;  // padded positions are masked anyway
    const std::string proto = sp_.serialized_model_proto();
    char hash[17];
    std::snprintf(hash, sizeof hash, "%016llx",
                  static_cast<unsigned long long>(fnv1a64(proto.data(), proto.size())));
    id_ = "spm-" + std::to_string(vocab_) + "-" + hash;
  }
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int> ids;
    const auto st = sp_.Encode(text, &ids);
    COIL_CHECK(st.ok(), "SentencePiece encode failed: ", st.ToString());
    return std::vector<int32_t>(ids.begin(), ids.end());
  }
  std::string decode(std::span<const int32_t> ids) const override {
    std::vector<int> keep;
    keep.reserve(ids.size());
    for (int32_t id : ids) {
      if (id == bos_ || id == eos_ || id == pad_) continue;
      COIL_CHECK(id >= 0 && id < vocab_, "decode: expected ids in [0, ", vocab_, "), got ", id);
      keep.push_back(id);
    }
    std::string out;
    const auto st = sp_.Decode(keep, &out);
    COIL_CHECK(st.ok(), "SentencePiece decode failed: ", st.ToString());
    return out;
  }
  int32_t vocab_size() const override { return vocab_; }
  int32_t bos_id() const override { return bos_; }
  int32_t eos_id() const override { return eos_; }
  int32_t pad_id() const override { return pad_; }
  std::string id() const override { return id_; }

 private:
  sentencepiece::SentencePieceProcessor sp_;
  int32_t vocab_ = 0, bos_ = 0, eos_ = 0, pad_ = 0;
  std::string id_;
};

}  // namespace

std::string train_sentencepiece(const SentencePieceTrainOptions& opt, std::ostream& log) {
  COIL_CHECK(opt.vocab_size >= 260 + 4,
             "tokenizer vocab must be >= 264 (256 byte pieces + 4 special + some merges), got ",
             opt.vocab_size);
  COIL_CHECK(opt.vocab_size <= (1 << 24), "tokenizer vocab must be <= 2^24, got ", opt.vocab_size);
  COIL_CHECK(!opt.out_prefix.empty(), "train_sentencepiece: an output prefix is required");
  const std::string corpus = corpus_split_path(opt.corpus_dir, "train");
  CorpusLines lines(corpus);
  COIL_CHECK(lines.size() > 0, "corpus file '", corpus, "' has no text to train a tokenizer on");
  if (auto parent = fs::path(opt.out_prefix).parent_path(); !parent.empty())
    fs::create_directories(parent);
  const int threads = opt.threads > 0 ? opt.threads : int(std::max(1u, std::thread::hardware_concurrency()));
  std::unordered_map<std::string, std::string> args = {
      {"model_prefix", opt.out_prefix},
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(opt.vocab_size)},
      {"character_coverage", std::to_string(opt.character_coverage)},
      {"byte_fallback", "true"},
      {"split_digits", "true"},
      {"allow_whitespace_only_pieces", "true"},
      {"remove_extra_whitespaces", "false"},
      {"normalization_rule_name", "identity"},
      {"input_sentence_size", std::to_string(opt.max_sentences)},
      {"shuffle_input_sentence", "true"},
      {"unk_id", "0"}, {"bos_id", "1"}, {"eos_id", "2"}, {"pad_id", "3"},
      {"num_threads", std::to_string(threads)},
      {"minloglevel", opt.verbose ? "0" : "1"},
  };
  log << "tokenizer: training SentencePiece BPE, vocab " << opt.vocab_size << ", on " << lines.size()
      << " lines of " << corpus << " (" << threads << " threads)\n" << std::flush;
  sentencepiece::SetRandomGeneratorSeed(unsigned(opt.seed));  // the sentence sampling (a global)
  const auto st = sentencepiece::SentencePieceTrainer::Train(args, &lines);
  COIL_CHECK(st.ok(), "SentencePiece training on '", corpus, "' failed: ", st.ToString());
  const std::string model = opt.out_prefix + ".model";
  COIL_CHECK(fs::is_regular_file(model), "SentencePiece training did not write '", model, "'");
  return model;
}

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path) {
  return std::make_unique<SentencePieceTokenizer>(path);
}

#endif

}  // namespace coil
