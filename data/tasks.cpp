// Synthetic evaluation tasks (see tasks.h for the formats).
#include "data/tasks.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/random.h"

namespace coil {
namespace {

// Example `index` of a task draws from its own stream, so examples can be built in any order.
Generator example_rng(uint64_t seed, int64_t index) {
  return Generator(Generator::hash(seed, uint64_t(index)));
}

// Uniform in [0, n) (n > 0); the modulo bias is below 2^-40 for the n used here.
int64_t draw(Generator& g, int64_t n) { return int64_t(g.next_u64() % uint64_t(n)); }

// k distinct values of [0, n), in random order (partial Fisher-Yates).
std::vector<int64_t> draw_distinct(Generator& g, int64_t n, int64_t k) {
  std::vector<int64_t> all(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) all[size_t(i)] = i;
  for (int64_t i = 0; i < k; ++i) std::swap(all[size_t(i)], all[size_t(i + draw(g, n - i))]);
  all.resize(size_t(k));
  return all;
}

std::string digits(Generator& g, int64_t n, bool leading_zero_ok) {
  std::string s;
  for (int64_t i = 0; i < n; ++i)
    s += char('0' + (i == 0 && !leading_zero_ok ? 1 + draw(g, 9) : draw(g, 10)));
  return s;
}

bool has_digit(const std::string& s) {
  return std::any_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

void append(std::vector<int32_t>& to, const std::vector<int32_t>& from) {
  to.insert(to.end(), from.begin(), from.end());
}

// Name parts for the phonebook: 32 x 32 = 1024 distinct full names.
constexpr const char* kFirst[] = {
    "Ada",   "Ben",   "Cora",  "Dan",   "Eva",   "Finn",  "Gwen",  "Hugo",  "Iris",  "Jack", "Kira",
    "Leo",   "Mia",   "Nate",  "Olga",  "Paul",  "Quinn", "Rosa",  "Sam",   "Tara",  "Uma",  "Vic",
    "Wade",  "Xena",  "Yuri",  "Zoe",   "Anton", "Bella", "Carl",  "Dora",  "Emil",  "Fay"};
constexpr const char* kLast[] = {
    "Abbot",  "Baker",  "Carver", "Dalton", "Ellis",  "Fisher", "Garner", "Hale",
    "Ingram", "Jensen", "Keller", "Lowell", "Mercer", "Nolan",  "Orton",  "Porter",
    "Quill",  "Reyes",  "Sutton", "Tanner", "Upton",  "Vance",  "Walsh",  "Yates",
    "Zeller", "Archer", "Brooks", "Colby",  "Dunn",   "Everett", "Frost", "Grant"};
constexpr int64_t kNumFirst = int64_t(std::size(kFirst)), kNumLast = int64_t(std::size(kLast));

}  // namespace

void MqarOptions::validate() const {
  COIL_CHECK(num_pairs >= 1, "mqar: num_pairs must be >= 1, got ", num_pairs);
  COIL_CHECK(key_vocab >= num_pairs, "mqar: key_vocab (", key_vocab, ") must be >= num_pairs (",
             num_pairs, ") so that keys are distinct");
  COIL_CHECK(value_vocab >= 1, "mqar: value_vocab must be >= 1, got ", value_vocab);
  COIL_CHECK(num_queries >= 0 && num_queries <= num_pairs, "mqar: num_queries must be in [0, num_pairs = ",
             num_pairs, "], got ", num_queries);
  COIL_CHECK(first_token >= 0, "mqar: first_token must be >= 0, got ", first_token);
}

TokenTaskExample make_mqar(const MqarOptions& opt, uint64_t seed, int64_t index) {
  opt.validate();
  Generator g = example_rng(seed, index);
  const int64_t N = opt.num_pairs, Q = opt.num_queries ? opt.num_queries : opt.num_pairs;
  std::vector<int64_t> keys = draw_distinct(g, opt.key_vocab, N);
  std::vector<int64_t> values(static_cast<size_t>(N));
  for (auto& v : values) v = draw(g, opt.value_vocab);
  const int32_t key0 = opt.first_token, value0 = int32_t(opt.first_token + opt.key_vocab);
  TokenTaskExample ex;
  for (int64_t i = 0; i < N; ++i) {
    ex.tokens.push_back(key0 + int32_t(keys[size_t(i)]));
    ex.tokens.push_back(value0 + int32_t(values[size_t(i)]));
  }
  ex.targets.assign(ex.tokens.size(), -1);
  for (int64_t q : draw_distinct(g, N, Q)) {
    ex.tokens.push_back(key0 + int32_t(keys[size_t(q)]));
    ex.targets.push_back(value0 + int32_t(values[size_t(q)]));
    ex.tokens.push_back(value0 + int32_t(values[size_t(q)]));
    ex.targets.push_back(-1);
  }
  return ex;
}

void PasskeyOptions::validate() const {
  COIL_CHECK(context_tokens >= 1, "passkey: context_tokens must be >= 1, got ", context_tokens);
  COIL_CHECK(depth >= 0.0 && depth <= 1.0, "passkey: depth must be in [0, 1], got ", depth);
  COIL_CHECK(key_digits_min >= 1 && key_digits_max >= key_digits_min && key_digits_max <= 18,
             "passkey: key digits must satisfy 1 <= min <= max <= 18, got ", key_digits_min, "..",
             key_digits_max);
}

std::vector<int32_t> digit_free_filler(const Tokenizer& tok, std::span<const int32_t> text_tokens) {
  std::vector<int32_t> out;
  out.reserve(text_tokens.size());
  for (int32_t t : text_tokens) {
    if (t == tok.bos_id() || t == tok.eos_id() || t == tok.pad_id()) continue;
    if (!has_digit(tok.decode(std::span<const int32_t>(&t, 1)))) out.push_back(t);
  }
  return out;
}

TextTaskExample make_passkey(const Tokenizer& tok, std::span<const int32_t> filler,
                             const PasskeyOptions& opt, uint64_t seed, int64_t index) {
  opt.validate();
  COIL_CHECK(!filler.empty(), "passkey: the filler text is empty");
  Generator g = example_rng(seed, index);
  const int64_t n_digits = opt.key_digits_min + draw(g, opt.key_digits_max - opt.key_digits_min + 1);
  const std::string key = digits(g, n_digits, false);
  // Filler starts at a random offset so examples of one cell differ in their text too.
  const int64_t start = draw(g, int64_t(filler.size()));

  const std::vector<int32_t> needle = tok.encode(" The pass key is " + key + ". Remember it.");
  const std::vector<int32_t> question = tok.encode(" What is the pass key? The pass key is");
  const int64_t n_filler = opt.context_tokens - int64_t(needle.size() + question.size());
  COIL_CHECK(n_filler >= 0, "passkey: context_tokens ", opt.context_tokens,
             " is too short for the needle and the question (", needle.size() + question.size(),
             " tokens)");
  const int64_t at = std::llround(opt.depth * double(n_filler));
  TextTaskExample ex;
  ex.prompt.reserve(size_t(opt.context_tokens));
  auto put_filler = [&](int64_t from, int64_t to) {
    for (int64_t i = from; i < to; ++i)
      ex.prompt.push_back(filler[size_t((start + i) % int64_t(filler.size()))]);
  };
  put_filler(0, at);
  ex.needle_token = int64_t(ex.prompt.size());
  append(ex.prompt, needle);
  put_filler(at, n_filler);
  append(ex.prompt, question);
  ex.answer = " " + key;
  ex.answer_tokens = tok.encode(ex.answer);
  return ex;
}

void PhonebookOptions::validate() const {
  COIL_CHECK(entries >= 1 && entries <= kNumFirst * kNumLast, "phonebook: entries must be in [1, ",
             kNumFirst * kNumLast, "], got ", entries);
}

TextTaskExample make_phonebook(const Tokenizer& tok, const PhonebookOptions& opt, uint64_t seed,
                               int64_t index) {
  opt.validate();
  Generator g = example_rng(seed, index);
  std::vector<int64_t> names = draw_distinct(g, kNumFirst * kNumLast, opt.entries);
  std::vector<std::string> numbers;
  while (int64_t(numbers.size()) < opt.entries) {
    std::string n = digits(g, 3, false) + "-" + digits(g, 4, true);
    if (std::find(numbers.begin(), numbers.end(), n) == numbers.end()) numbers.push_back(n);
  }
  auto name = [&](int64_t i) {
    const int64_t id = names[size_t(i)];
    return std::string(kFirst[id / kNumLast]) + " " + kLast[id % kNumLast];
  };
  const int64_t asked = draw(g, opt.entries);
  std::string text;
  if (opt.reversed) text += "Look up the phone number of " + name(asked) + ".\n";
  for (int64_t i = 0; i < opt.entries; ++i) text += name(i) + ": " + numbers[size_t(i)] + "\n";
  text += "\nThe phone number of " + name(asked) + " is";
  TextTaskExample ex;
  ex.prompt = tok.encode(text);
  ex.answer = " " + numbers[size_t(asked)];
  ex.answer_tokens = tok.encode(ex.answer);
  return ex;
}

int64_t count_occurrences(const std::string& haystack, const std::string& needle) {
  if (needle.empty()) return 0;
  int64_t n = 0;
  for (size_t p = haystack.find(needle); p != std::string::npos; p = haystack.find(needle, p + 1)) ++n;
  return n;
}

}  // namespace coil
