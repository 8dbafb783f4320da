// The SentencePiece BPE tokenizer: training on a prepared corpus and loading a .model file. Built
// with libsentencepiece (COIL_HAVE_SENTENCEPIECE); without it both functions throw a coil::Error that
// says so, and have_sentencepiece() is false.
//
// Training settings (Llama-style, so decode(encode(text)) == text for ordinary text): BPE, identity
// normalisation, no collapsing of whitespace, byte fallback (every byte is a piece, so nothing is
// <unk>; a newline becomes the piece <0x0A>), digits split, ids unk 0, BOS 1, EOS 2, PAD 3.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <memory>
#include <string>

#include "data/tokenizer.h"

namespace coil {

bool have_sentencepiece();

struct SentencePieceTrainOptions {
  std::string corpus_dir;          // reads corpus_dir/train.jsonl (never the held-out split)
  std::string out_prefix;          // writes out_prefix.model and out_prefix.vocab
  int vocab_size = 16384;
  int64_t max_sentences = 2000000; // lines sampled for training (input_sentence_size)
  double character_coverage = 0.9995;
  int threads = 0;                 // 0: hardware concurrency
  uint64_t seed = 0;               // seeds the sentence sampling
  bool verbose = false;            // SentencePiece's own progress log on stderr
};

// Trains and writes the model; returns the path of the .model file.
std::string train_sentencepiece(const SentencePieceTrainOptions& opt, std::ostream& log);

// Loads a .model file. id() = "spm-<vocab>-<16 hex digits of FNV-1a of the serialized model>".
std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path);

}  // namespace coil
