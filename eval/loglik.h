// Log-likelihood scoring with lm-evaluation-harness conventions (../shared/eval-data/README.md):
//   - a request is (context text, continuation text); trailing whitespace of the context moves into
//     the continuation, and the continuation's tokens are enc(context + continuation) minus
//     enc(context) (so a tokenizer that merges across the boundary is handled the harness's way);
//   - its score is the summed log-probability of the continuation tokens given everything before,
//     and `greedy` says whether every continuation token is the argmax at its position;
//   - multiple choice: acc = argmax of the log-likelihoods, acc_norm = argmax of log-likelihood
//     divided by the choice's length in characters (Unicode code points of the choice text);
//   - WinoGrande (partial scoring): the same continuation after each option's context; acc = argmax;
//   - LAMBADA: acc = greedy exact match of " " + word, perplexity = exp(-mean log-likelihood).
// Ties pick the lowest index (numpy argmax). The pure rules are separate from the model call so
// they can be checked against hand-computed numbers.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "data/tokenizer.h"
#include "layers/lm.h"

namespace coil {

struct TokenizedRequest {
  std::vector<int32_t> context;       // enc(context)'s share of enc(context + continuation)
  std::vector<int32_t> continuation;  // the rest
};

// Moves trailing whitespace of `context` to the front of `continuation` (in place).
void move_trailing_whitespace(std::string& context, std::string& continuation);
// The harness's token boundary: whole = enc(context + continuation), context part =
// whole[:len(enc(context))], continuation part = the rest (trailing whitespace moved first).
TokenizedRequest tokenize_request(const Tokenizer& tok, std::string context, std::string continuation);

struct LoglikResult {
  double logprob = 0;   // sum over continuation tokens of log p(token | everything before)
  bool greedy = false;  // every continuation token is the argmax of its row
};

// The rule on host logits: rows (n, V) where row i predicts continuation[i].
LoglikResult loglik_from_rows(const std::vector<double>& rows, int64_t V,
                              const std::vector<int32_t>& continuation);

// Runs the model on context + continuation (the last max_length + 1 tokens when longer, 0: no
// limit; an empty context is replaced by `empty_context_token`) and scores the continuation.
LoglikResult score_request(const LanguageModel& model, const TokenizedRequest& req, int64_t max_length,
                           int32_t empty_context_token);

// argmax of xs (ties: the lowest index).
int64_t argmax_index(const std::vector<double>& xs);
// acc rule and acc_norm rule (log-likelihood / length in characters).
int64_t choose_acc(const std::vector<double>& loglik);
int64_t choose_acc_norm(const std::vector<double>& loglik, const std::vector<std::string>& choices);
// Unicode code points of UTF-8 text (invalid bytes count one each).
int64_t utf8_length(const std::string& s);

}  // namespace coil
