// The synthetic task generators: deterministic for a seed, the pass-key answer present exactly once,
// MQAR targets consistent with the pairs, phonebook answers unique.
#include <gtest/gtest.h>

#include <cmath>
#include <map>
#include <set>

#include "data/tasks.h"
#include "eval_test_util.h"

namespace coil {
namespace {

TEST(Tasks, MqarIsDeterministicAndTargetsAreTheQueriedValues) {
  MqarOptions o;
  o.num_pairs = 6;
  o.key_vocab = 10;
  o.value_vocab = 7;
  o.first_token = 3;
  for (int64_t i = 0; i < 20; ++i) {
    TokenTaskExample a = make_mqar(o, 5, i), b = make_mqar(o, 5, i);
    EXPECT_EQ(a.tokens, b.tokens);
    EXPECT_EQ(a.targets, b.targets);
    ASSERT_EQ(a.tokens.size(), size_t(4 * o.num_pairs));
    std::map<int32_t, int32_t> pairs;
    for (int64_t p = 0; p < o.num_pairs; ++p) {
      const int32_t k = a.tokens[size_t(2 * p)], v = a.tokens[size_t(2 * p + 1)];
      EXPECT_TRUE(k >= 3 && k < 13) << k;
      EXPECT_TRUE(v >= 13 && v < 20) << v;
      EXPECT_TRUE(pairs.emplace(k, v).second) << "keys are distinct";
    }
    int64_t queries = 0;
    for (size_t t = 0; t < a.tokens.size(); ++t) {
      if (a.targets[t] < 0) continue;
      EXPECT_GE(t, size_t(2 * o.num_pairs));
      EXPECT_EQ(a.targets[t], pairs.at(a.tokens[t]));
      ++queries;
    }
    EXPECT_EQ(queries, o.num_pairs);
  }
  EXPECT_NE(make_mqar(o, 5, 0).tokens, make_mqar(o, 6, 0).tokens);
  EXPECT_NE(make_mqar(o, 5, 0).tokens, make_mqar(o, 5, 1).tokens);
  o.key_vocab = 3;
  EXPECT_THROW(make_mqar(o, 5, 0), Error);
}

TEST(Tasks, PasskeyIsDeterministicWithTheAnswerExactlyOnce) {
  ByteTokenizer tok;
  // Filler with digits of its own: they are dropped, so the key is the only number.
  std::string text = "In 1999 there were 42 boats and 7 bridges. ";
  for (const auto& d : testing::filler_documents()) text += d + " ";
  const std::vector<int32_t> filler = digit_free_filler(tok, tok.encode(text));
  const std::string kept = tok.decode(filler);
  EXPECT_EQ(kept.find_first_of("0123456789"), std::string::npos);
  for (int64_t ctx : {80, 128, 300, 1000})
    for (double depth : {0.0, 0.3, 0.5, 1.0})
      for (int64_t i = 0; i < 5; ++i) {
        PasskeyOptions o;
        o.context_tokens = ctx;
        o.depth = depth;
        TextTaskExample a = make_passkey(tok, filler, o, 11, i), b = make_passkey(tok, filler, o, 11, i);
        EXPECT_EQ(a.prompt, b.prompt);
        EXPECT_EQ(a.answer, b.answer);
        EXPECT_EQ(int64_t(a.prompt.size()), ctx);
        const std::string key = a.answer.substr(1);
        EXPECT_GE(key.size(), 4u);
        EXPECT_LE(key.size(), 6u);
        EXPECT_NE(key[0], '0');
        const std::string prompt = tok.decode(a.prompt);
        EXPECT_EQ(count_occurrences(prompt, key), 1) << prompt;
        EXPECT_EQ(count_occurrences(prompt, "The pass key is"), 2);  // the needle and the question
        EXPECT_EQ(prompt.substr(prompt.size() - 15), "The pass key is");
        // The needle sits at the requested depth of the filler.
        const int64_t n_filler = ctx - 69 - int64_t(key.size());  // needle 31 + digits, question 38
        EXPECT_EQ(a.needle_token, std::llround(depth * double(n_filler)));
        EXPECT_EQ(tok.decode(std::vector<int32_t>(a.prompt.begin() + a.needle_token,
                                                  a.prompt.begin() + a.needle_token + 17)),
                  " The pass key is ");
      }
  PasskeyOptions o;
  EXPECT_NE(make_passkey(tok, filler, o, 11, 0).answer, make_passkey(tok, filler, o, 12, 0).answer);
  o.context_tokens = 50;
  EXPECT_THROW(make_passkey(tok, filler, o, 11, 0), Error);
}

TEST(Tasks, PhonebookIsDeterministicWithOneMatchingEntry) {
  ByteTokenizer tok;
  for (bool reversed : {false, true})
    for (int64_t i = 0; i < 20; ++i) {
      PhonebookOptions o;
      o.entries = 12;
      o.reversed = reversed;
      TextTaskExample a = make_phonebook(tok, o, 3, i), b = make_phonebook(tok, o, 3, i);
      EXPECT_EQ(a.prompt, b.prompt);
      EXPECT_EQ(a.answer, b.answer);
      const std::string text = tok.decode(a.prompt), number = a.answer.substr(1);
      EXPECT_EQ(count_occurrences(text, number), 1) << text;
      EXPECT_EQ(count_occurrences(text, "\n"), 12 + 1 + (reversed ? 1 : 0));
      EXPECT_EQ(text.rfind("Look up", 0) == 0, reversed);
      // The asked name's entry carries the answer.
      const std::string asked = text.substr(text.rfind("of ") + 3, text.size() - text.rfind("of ") - 6);
      EXPECT_NE(text.find(asked + ": " + number), std::string::npos) << asked;
    }
  EXPECT_NE(make_phonebook(tok, {}, 3, 0).prompt, make_phonebook(tok, {}, 4, 0).prompt);
}

}  // namespace
}  // namespace coil
