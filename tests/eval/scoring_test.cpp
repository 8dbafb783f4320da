// The lm-eval scoring rules against hand-computed log-likelihoods. The model is a bigram table built
// into a 1-layer LM (mixer and MLP weights zero, so every block is the identity; one-hot embeddings;
// lm_head holds log P(next | token)), and the tokenizer a greedy longest-match over 8 pieces, so every
// expected number below is a sum of logs of the table's probabilities.
#include <gtest/gtest.h>

#include <cmath>
#include <map>

#include "core/autograd/grad_mode.h"
#include "eval/loglik.h"

namespace coil {
namespace {

// Pieces: a b c d ' ' ab bc <s>; greedy longest match, so "abc" -> [ab, c] but "a" + "bc" -> [a], [bc].
class PieceTokenizer final : public Tokenizer {
 public:
  std::vector<std::string> pieces{"a", "b", "c", "d", " ", "ab", "bc", "<s>"};
  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids;
    size_t i = 0;
    while (i < text.size()) {
      int32_t best = -1;
      for (int32_t p = 0; p < 7; ++p)
        if (text.substr(i, pieces[size_t(p)].size()) == pieces[size_t(p)] &&
            (best < 0 || pieces[size_t(p)].size() > pieces[size_t(best)].size()))
          best = p;
      if (best < 0) throw std::runtime_error("untokenizable text");
      ids.push_back(best);
      i += pieces[size_t(best)].size();
    }
    return ids;
  }
  std::string decode(std::span<const int32_t> ids) const override {
    std::string s;
    for (int32_t id : ids)
      if (id != 7) s += pieces[size_t(id)];
    return s;
  }
  int32_t vocab_size() const override { return 8; }
  int32_t bos_id() const override { return 7; }
  int32_t eos_id() const override { return 7; }
  int32_t pad_id() const override { return 7; }
  std::string id() const override { return "pieces-test"; }
};

enum Tok { A = 0, B = 1, C = 2, D = 3, SP = 4, AB = 5, BC = 6, BOS = 7 };
constexpr int64_t V = 8;

// P(next | token): row A and row BOS are hand-set, every other row is uniform (1/8).
std::vector<double> bigram_row(int t) {
  if (t == A) return {0.1, 0.2, 0.3, 0.1, 0.1, 0.05, 0.1, 0.05};
  if (t == BOS) return {0.9, 0.1 / 7, 0.1 / 7, 0.1 / 7, 0.1 / 7, 0.1 / 7, 0.1 / 7, 0.1 / 7};
  return std::vector<double>(V, 1.0 / 8);
}

std::unique_ptr<LanguageModel> bigram_model() {
  ModelConfig c;
  c.mixer = "softmax";
  c.vocab = V;
  c.d_model = V;
  c.n_layers = 1;
  c.n_heads = 1;
  c.head_dim = V;
  c.mlp_hidden = 8;
  auto m = std::make_unique<LanguageModel>(c, ParamOptions{DType::F64, Device::cpu()});
  NoGradGuard ng;
  for (auto& [name, p] : m->named_parameters()) p.fill_(0.0);
  // Embedding e_t * 1000: RMSNorm gives e_t * sqrt(8) (eps is negligible at this scale) and the final
  // norm's weight 1/sqrt(8) brings it back to e_t, so logits[v] = lm_head[v, t].
  double* emb = m->embedding->parameters()[0].data<double>();
  for (int64_t t = 0; t < V; ++t) emb[t * V + t] = 1000.0;
  m->norm_f->parameters()[0].fill_(1.0 / std::sqrt(double(V)));
  double* head = m->lm_head->parameters()[0].data<double>();  // (V, C)
  for (int t = 0; t < V; ++t) {
    std::vector<double> p = bigram_row(t);
    for (int64_t v = 0; v < V; ++v) head[v * V + t] = std::log(p[size_t(v)]);
  }
  return m;
}

constexpr double kTol = 1e-9;

TEST(Scoring, LoglikFromRowsSumsLogSoftmaxAndChecksEveryTokenIsGreedy) {
  // Row 1: logits (0, ln 2, 0) -> p = (1/4, 1/2, 1/4); row 2: (ln 3, 0, 0) -> (3/5, 1/5, 1/5).
  std::vector<double> rows{0, std::log(2.0), 0, std::log(3.0), 0, 0};
  LoglikResult r = loglik_from_rows(rows, 3, {1, 2});
  EXPECT_NEAR(r.logprob, std::log(0.5 * 0.2), kTol);
  EXPECT_FALSE(r.greedy);  // token 2 is not the argmax of row 2
  r = loglik_from_rows(rows, 3, {1, 0});
  EXPECT_NEAR(r.logprob, std::log(0.5 * 0.6), kTol);
  EXPECT_TRUE(r.greedy);
}

TEST(Scoring, TokenBoundaryIsWholeEncodingMinusContextEncoding) {
  PieceTokenizer tok;
  // enc("abc") = [ab, c] and enc("a") has one token: the context keeps [ab], the continuation is [c]
  // (encoding the two texts separately would give [a] and [bc]).
  TokenizedRequest r = tokenize_request(tok, "a", "bc");
  EXPECT_EQ(r.context, (std::vector<int32_t>{AB}));
  EXPECT_EQ(r.continuation, (std::vector<int32_t>{C}));
  // Trailing whitespace of the context moves into the continuation.
  r = tokenize_request(tok, "a ", "c");
  EXPECT_EQ(r.context, (std::vector<int32_t>{A}));
  EXPECT_EQ(r.continuation, (std::vector<int32_t>{SP, C}));
  std::string ctx = "q\n ", cont = " x";
  move_trailing_whitespace(ctx, cont);
  EXPECT_EQ(ctx, "q");
  EXPECT_EQ(cont, "\n  x");
  // The score covers the continuation only: log P(c | ab) = log 1/8.
  auto m = bigram_model();
  EXPECT_NEAR(score_request(*m, tokenize_request(tok, "a", "bc"), 0, BOS).logprob, std::log(1.0 / 8), kTol);
}

TEST(Scoring, AccIsArgmaxLoglikAndAccNormDividesByCharacters) {
  PieceTokenizer tok;
  auto m = bigram_model();
  // query "a", choices "c" and "bd", each scored as " " + choice:
  //   " c":  log P(' '|a) + log P(c|' ')            = log 0.1 + log 1/8      = -4.3820
  //   " bd": log P(' '|a) + log P(b|' ') + P(d|b)   = log 0.1 + 2 log 1/8    = -6.4614
  // acc picks "c"; per character (1 and 2): -4.3820 vs -3.2307, so acc_norm picks "bd".
  const std::vector<std::string> choices{"c", "bd"};
  std::vector<double> ll;
  for (const auto& ch : choices)
    ll.push_back(score_request(*m, tokenize_request(tok, "a", " " + ch), 0, BOS).logprob);
  EXPECT_NEAR(ll[0], std::log(0.1) + std::log(1.0 / 8), kTol);
  EXPECT_NEAR(ll[1], std::log(0.1) + 2 * std::log(1.0 / 8), kTol);
  EXPECT_EQ(choose_acc(ll), 0);
  EXPECT_EQ(choose_acc_norm(ll, choices), 1);
  // Length in characters, not bytes: "é" is one character of two bytes.
  EXPECT_EQ(utf8_length("caf\xc3\xa9"), 4);
  EXPECT_EQ(choose_acc_norm({-4.0, -4.4}, {"caf\xc3\xa9", "abcd"}), 0);  // -1.0 vs -1.1 per character
  // Ties go to the first choice (numpy argmax).
  EXPECT_EQ(choose_acc({-1.0, -1.0}), 0);
}

TEST(Scoring, WinograndePartialScoringComparesTheSharedContinuationOnly) {
  PieceTokenizer tok;
  auto m = bigram_model();
  // Options "a" and "b", continuation " c". Partial scoring: log P(' '|option) + log P(c|' '):
  //   a: log 0.1 + log 1/8 = -4.3820     b: log 1/8 + log 1/8 = -4.1589  -> option b.
  // Scoring whole sentences from <s> would add log P(option|<s>) (0.9 vs 0.1/7) and pick a.
  std::vector<double> partial, whole;
  for (const std::string opt : {"a", "b"}) {
    partial.push_back(score_request(*m, tokenize_request(tok, opt, " c"), 0, BOS).logprob);
    whole.push_back(score_request(*m, tokenize_request(tok, "", opt + " c"), 0, BOS).logprob);
  }
  EXPECT_NEAR(partial[0], std::log(0.1) + std::log(1.0 / 8), kTol);
  EXPECT_NEAR(partial[1], 2 * std::log(1.0 / 8), kTol);
  EXPECT_EQ(choose_acc(partial), 1);
  EXPECT_NEAR(whole[0], std::log(0.9) + std::log(0.1) + std::log(1.0 / 8), kTol);
  EXPECT_EQ(choose_acc(whole), 0);
}

TEST(Scoring, LambadaIsGreedyExactMatchOfEveryContinuationToken) {
  PieceTokenizer tok;
  auto m = bigram_model();
  // After "a" the argmax is c (0.3): "c" is a greedy match, "d" (0.1) is not.
  LoglikResult r = score_request(*m, tokenize_request(tok, "a", "c"), 0, BOS);
  EXPECT_TRUE(r.greedy);
  EXPECT_NEAR(r.logprob, std::log(0.3), kTol);
  r = score_request(*m, tokenize_request(tok, "a", "d"), 0, BOS);
  EXPECT_FALSE(r.greedy);
  EXPECT_NEAR(r.logprob, std::log(0.1), kTol);
  // "cd": c is greedy after a, but after c (a uniform row) the argmax is token 0, not d.
  r = score_request(*m, tokenize_request(tok, "a", "cd"), 0, BOS);
  EXPECT_FALSE(r.greedy);
  EXPECT_NEAR(r.logprob, std::log(0.3) + std::log(1.0 / 8), kTol);
  // max_length keeps the last max_length + 1 tokens: the continuation is still scored the same
  // (the bigram model only looks one token back).
  r = score_request(*m, tokenize_request(tok, "dddda", "c"), 1, BOS);
  EXPECT_NEAR(r.logprob, std::log(0.3), kTol);
}

}  // namespace
}  // namespace coil
