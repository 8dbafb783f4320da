// Log-likelihood scoring rules (see loglik.h).
#include "eval/loglik.h"

#include <algorithm>
#include <cmath>

#include "core/autograd/grad_mode.h"
#include "core/error.h"
#include "core/ops.h"
#include "eval/decode.h"

namespace coil {

void move_trailing_whitespace(std::string& context, std::string& continuation) {
  size_t end = context.size();
  while (end > 0 && (context[end - 1] == ' ' || context[end - 1] == '\n' || context[end - 1] == '\t' ||
                     context[end - 1] == '\r'))
    --end;
  continuation = context.substr(end) + continuation;
  context.resize(end);
}

TokenizedRequest tokenize_request(const Tokenizer& tok, std::string context, std::string continuation) {
  move_trailing_whitespace(context, continuation);
  const std::vector<int32_t> whole = tok.encode(context + continuation);
  const size_t n_ctx = std::min(tok.encode(context).size(), whole.size());
  TokenizedRequest r;
  r.context.assign(whole.begin(), whole.begin() + std::ptrdiff_t(n_ctx));
  r.continuation.assign(whole.begin() + std::ptrdiff_t(n_ctx), whole.end());
  return r;
}

LoglikResult loglik_from_rows(const std::vector<double>& rows, int64_t V,
                              const std::vector<int32_t>& continuation) {
  COIL_CHECK(int64_t(rows.size()) == int64_t(continuation.size()) * V, "loglik: ", rows.size(),
             " logits for ", continuation.size(), " tokens of a vocab of ", V);
  LoglikResult r;
  r.greedy = true;
  for (size_t i = 0; i < continuation.size(); ++i) {
    const double* row = rows.data() + int64_t(i) * V;
    const int32_t tok = continuation[i];
    COIL_CHECK(tok >= 0 && tok < V, "loglik: token ", tok, " outside the vocab [0, ", V, ")");
    // log softmax, max-subtracted.
    const double top = *std::max_element(row, row + V);
    double z = 0;
    for (int64_t v = 0; v < V; ++v) z += std::exp(row[v] - top);
    r.logprob += row[tok] - top - std::log(z);
    if (argmax_row(row, V) != tok) r.greedy = false;
  }
  return r;
}

LoglikResult score_request(const LanguageModel& model, const TokenizedRequest& req, int64_t max_length,
                           int32_t empty_context_token) {
  COIL_CHECK(!req.continuation.empty(), "loglik: the continuation has no tokens");
  std::vector<int32_t> all = req.context;
  if (all.empty()) all.push_back(empty_context_token);
  all.insert(all.end(), req.continuation.begin(), req.continuation.end());
  // The harness keeps the last max_length + 1 tokens and feeds all but the last one.
  if (max_length > 0 && int64_t(all.size()) > max_length + 1)
    all.erase(all.begin(), all.end() - (max_length + 1));
  const int64_t V = model.config().vocab;
  for (int32_t t : all)
    COIL_CHECK(t >= 0 && t < V, "loglik: token ", t, " is outside the model's vocab [0, ", V,
               ") (tokenizer and checkpoint do not match)");
  const int64_t n_in = int64_t(all.size()) - 1, n_cont = int64_t(req.continuation.size());
  COIL_CHECK(n_cont <= n_in, "loglik: the continuation (", n_cont,
             " tokens) does not fit in max_length ", max_length);
  std::vector<int64_t> ids(all.begin(), all.end() - 1);
  const Device dev = model.embedding->parameters()[0].device();
  NoGradGuard no_grad;
  Tensor logits = model.forward(Tensor::from_ints(ids, {1, n_in}, DType::I32, dev));  // (1, n_in, V)
  std::vector<double> rows = logits_to_host(logits.narrow(1, n_in - n_cont, n_cont).contiguous());
  return loglik_from_rows(rows, V, req.continuation);
}

int64_t argmax_index(const std::vector<double>& xs) {
  COIL_CHECK(!xs.empty(), "argmax of an empty list");
  return int64_t(std::max_element(xs.begin(), xs.end()) - xs.begin());  // first of the maxima
}

int64_t choose_acc(const std::vector<double>& loglik) { return argmax_index(loglik); }

int64_t choose_acc_norm(const std::vector<double>& loglik, const std::vector<std::string>& choices) {
  COIL_CHECK(loglik.size() == choices.size(), "acc_norm: ", loglik.size(), " scores for ", choices.size(),
             " choices");
  std::vector<double> norm;
  for (size_t i = 0; i < choices.size(); ++i)
    norm.push_back(loglik[i] / double(std::max<int64_t>(1, utf8_length(choices[i]))));
  return argmax_index(norm);
}

int64_t utf8_length(const std::string& s) {
  int64_t n = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++n;  // every byte but a continuation byte starts a code point
  return n;
}

}  // namespace coil
