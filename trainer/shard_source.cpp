// The shard source: config keys -> TokenDataset -> DataLoader, and its state as a SourceState.
#include "trainer/shard_source.h"

#include <fnmatch.h>

#include <algorithm>
#include <filesystem>

#include "core/error.h"

namespace coil {

namespace fs = std::filesystem;

namespace {

bool is_glob(const std::string& s) {
  return s.find_first_of("*?") != std::string::npos ||
         (s.size() > 4 && s.compare(s.size() - 4, 4, ".bin") == 0);
}

// Shard files matching `pattern` (wildcards in the file name only), sorted by name.
std::vector<std::string> glob_files(const std::string& pattern, const std::string& key) {
  const fs::path p(pattern);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  const std::string name = p.filename().string();
  COIL_CHECK(dir.string().find_first_of("*?") == std::string::npos, key, ": '", pattern,
             "': wildcards are allowed in the file name only");
  std::vector<std::string> out;
  std::error_code ec;
  if (fs::is_directory(dir, ec)) {
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string f = e.path().filename().string();
      if (::fnmatch(name.c_str(), f.c_str(), 0) == 0) out.push_back(e.path().string());
    }
  }
  COIL_CHECK(!out.empty(), key, ": no token shard files match '", pattern, "'");
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TokenDataset open_config_shards(const RunConfig& c, const std::string& which) {
  const std::string& spec = which == "train" ? c.data.train : c.data.eval;
  const std::string key = c.source + ": data." + which;
  COIL_CHECK(!spec.empty(), key, " is empty");
  if (is_glob(spec)) {
    const std::string pattern =
        c.data.dir.empty() || fs::path(spec).is_absolute() ? spec : (fs::path(c.data.dir) / spec).string();
    return TokenDataset::open_files(glob_files(pattern, key));
  }
  COIL_CHECK(!c.data.dir.empty(), key, ": split '", spec, "' needs data.dir");
  COIL_CHECK(fs::is_directory(c.data.dir), c.source, ": data.dir '", c.data.dir,
             "' is not a directory (write token shards with 'coil data tokenize --out DIR')");
  return TokenDataset::open_split(c.data.dir, spec);
}

std::unique_ptr<BatchSource> make_shard_source(const RunConfig& c, const std::string& which,
                                               int dp_rank, int dp_size) {
  TokenDataset data = open_config_shards(c, which);
  COIL_CHECK(int64_t(data.vocab_size()) <= c.model.vocab, c.source, ": data.", which, " '",
             data.description(), "' holds tokens of tokenizer '", data.tokenizer_id(), "' (vocab ",
             data.vocab_size(), "), more than model.vocab = ", c.model.vocab);
  LoaderOptions o;
  o.seq_len = c.train.seq_len;
  o.global_batch = c.train.batch_size;
  o.dp_rank = dp_rank;
  o.dp_size = dp_size;
  o.mode = parse_loader_mode(c.data.mode);
  o.seed = which == "train" ? c.data.seed : c.data.eval_seed;
  o.shuffle = c.data.shuffle;
  return std::make_unique<ShardSource>(std::move(data), o, which);
}

ShardSource::ShardSource(TokenDataset data, const LoaderOptions& options, std::string stream)
    : loader_(std::move(data), options), stream_(std::move(stream)) {}

Batch ShardSource::next_batch() {
  TokenBatch b = loader_.next_batch();
  return {std::move(b.ids), std::move(b.targets)};
}

SourceState ShardSource::state() const {
  SourceState s{{"kind", std::string("shards")}};
  for (const auto& [k, v] : loader_.position().to_map()) s[k] = v;
  return s;
}

void ShardSource::restore(const SourceState& s) {
  const std::string kind = state_string(s, "kind");
  COIL_CHECK(kind == "shards", "data.", stream_, ": the checkpoint holds a '", kind,
             "' data position, this run reads token shards (data.kind shards)");
  std::map<std::string, std::string> m;
  for (const auto& [k, v] : s) {
    if (k == "kind") continue;
    const std::string* str = std::get_if<std::string>(&v);
    COIL_CHECK(str, "data.", stream_, ": checkpoint data position key '", k,
               "' holds an integer, expected a string");
    m[k] = *str;
  }
  try {
    loader_.set_position(LoaderPosition::from_map(m));
  } catch (const Error& e) {
    COIL_FAIL("data.", stream_, ": ", e.message());
  }
}

std::string ShardSource::describe() const {
  const LoaderOptions& o = loader_.options();
  return std::string("shards ") + loader_.dataset().description() + " (" +
         std::to_string(loader_.dataset().num_docs()) + " documents, " +
         std::to_string(loader_.dataset().num_tokens()) + " tokens, " + loader_mode_name(o.mode) +
         (o.shuffle ? ", shuffled seed " + std::to_string(o.seed) : ", in order") + ")";
}

}  // namespace coil
