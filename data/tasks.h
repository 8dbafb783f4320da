// Synthetic evaluation tasks: MQAR (multi-query associative recall, Zoology / Mamba-2), pass-key
// retrieval (a key hidden in filler text) and the phonebook lookup (standard and reversed order, as in
// the Mamba-2-Hybrid study). Every example is a pure function of (options, seed, index): generators draw
// from a counter-based Generator seeded by hash(seed, index), so any rank can build example i alone and
// a task is reproducible on any machine.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "data/tokenizer.h"

namespace coil {

// --- MQAR --------------------------------------------------------------------------------------------
// Token ids, no text: keys are drawn (distinct) from [first_token, first_token + key_vocab), values from
// the next value_vocab ids. Layout: k1 v1 k2 v2 ... kN vN, then num_queries queries q v (a key of the
// pairs, in random order, without repeats, followed by its value). targets[t] is the value expected
// after query key t, -1 elsewhere: a model is scored teacher-forced on those positions.
struct MqarOptions {
  int64_t num_pairs = 8;
  int64_t num_queries = 0;  // 0: every pair is queried once
  int64_t key_vocab = 64;
  int64_t value_vocab = 64;
  int32_t first_token = 0;
  void validate() const;    // throws coil::Error naming the field
};

struct TokenTaskExample {
  std::vector<int32_t> tokens;   // (T)
  std::vector<int32_t> targets;  // (T) expected next token, -1 where not scored
};

TokenTaskExample make_mqar(const MqarOptions& opt, uint64_t seed, int64_t index);

// --- text prompts with one exact answer (greedy decoding) --------------------------------------------
struct TextTaskExample {
  std::vector<int32_t> prompt;  // tokens fed to the model
  std::string answer;           // the text greedy decoding must produce, e.g. " 48213"
  std::vector<int32_t> answer_tokens;
  int64_t needle_token = -1;    // pass-key: first token of the needle sentence in the prompt
};

// --- pass-key retrieval ------------------------------------------------------------------------------
// prompt = filler[:a] + " The pass key is KEY. Remember it." + filler[a:] + " What is the pass key?
// The pass key is", answer " KEY", KEY a random number of key_digits_min..key_digits_max digits (no
// leading zero). The prompt is exactly context_tokens tokens; the needle starts at the filler token
// closest to depth * (filler tokens). Filler tokens that decode to text holding a digit are dropped
// (so the key occurs exactly once), the rest repeats cyclically when the filler is short.
struct PasskeyOptions {
  int64_t context_tokens = 256;
  double depth = 0.5;  // 0: needle first, 1: needle right before the question
  int64_t key_digits_min = 4;
  int64_t key_digits_max = 6;
  void validate() const;
};

// The digit-free filler tokens of `text_tokens` (what make_passkey draws from).
std::vector<int32_t> digit_free_filler(const Tokenizer& tok, std::span<const int32_t> text_tokens);

// `filler` must be digit-free (digit_free_filler) and non-empty; throws when context_tokens cannot
// hold the needle and the question.
TextTaskExample make_passkey(const Tokenizer& tok, std::span<const int32_t> filler,
                             const PasskeyOptions& opt, uint64_t seed, int64_t index);

// --- phonebook ---------------------------------------------------------------------------------------
// `entries` lines "First Last: DDD-DDDD" with distinct names and numbers, then
// "\nThe phone number of NAME is" -> " DDD-DDDD". Reversed: the question comes first ("Look up the
// phone number of NAME.\n") and is asked again after the book, so a model with a fixed-size state knows
// which entry to keep while it reads.
struct PhonebookOptions {
  int64_t entries = 20;
  bool reversed = false;
  void validate() const;
};

TextTaskExample make_phonebook(const Tokenizer& tok, const PhonebookOptions& opt, uint64_t seed,
                               int64_t index);

// Number of (possibly overlapping) occurrences of `needle` in `haystack` (tests, checks).
int64_t count_occurrences(const std::string& haystack, const std::string& needle);

}  // namespace coil
