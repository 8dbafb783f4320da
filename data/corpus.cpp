// Reading corpus JSONL files (a small JSON reader: flat objects of strings, which is all the corpus
// writer produces) and running the corpus builder script.
#include "data/corpus.h"

#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

#ifndef COIL_DATA_SOURCE_DIR
#define COIL_DATA_SOURCE_DIR "."
#endif

namespace coil {
namespace {

namespace fs = std::filesystem;

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

struct Reader {
  const std::string& s;
  size_t i = 0;
  std::string error;

  void ws() {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) ++i;
  }
  bool fail(const std::string& what) {
    if (error.empty()) error = what + " at column " + std::to_string(i + 1);
    return false;
  }
  bool hex4(uint32_t& v) {
    if (i + 4 > s.size()) return fail("truncated \\u escape");
    v = 0;
    for (int k = 0; k < 4; ++k) {
      char c = s[i++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= uint32_t(c - '0');
      else if (c >= 'a' && c <= 'f') v |= uint32_t(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= uint32_t(c - 'A' + 10);
      else return fail("bad \\u escape");
    }
    return true;
  }
  bool string(std::string& out) {
    if (i >= s.size() || s[i] != '"') return fail("expected a string");
    ++i;
    out.clear();
    while (i < s.size()) {
      char c = s[i++];
      if (c == '"') return true;
      if (c != '\\') {
        out.push_back(c);
        continue;
      }
      if (i >= s.size()) break;
      char e = s[i++];
      switch (e) {
        case '"': out.push_back('"'); break;
        case '\\': out.push_back('\\'); break;
        case '/': out.push_back('/'); break;
        case 'b': out.push_back('\b'); break;
        case 'f': out.push_back('\f'); break;
        case 'n': out.push_back('\n'); break;
        case 'r': out.push_back('\r'); break;
        case 't': out.push_back('\t'); break;
        case 'u': {
          uint32_t cp = 0;
          if (!hex4(cp)) return false;
          if (cp >= 0xD800 && cp < 0xDC00 && i + 1 < s.size() && s[i] == '\\' && s[i + 1] == 'u') {
            i += 2;
            uint32_t lo = 0;
            if (!hex4(lo)) return false;
            if (lo >= 0xDC00 && lo < 0xE000) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            else return fail("unpaired surrogate");
          }
          append_utf8(out, cp);
          break;
        }
        default: return fail(std::string("bad escape \\") + e);
      }
    }
    return fail("unterminated string");
  }
  // Skips a number, true, false or null (the corpus writer puts only strings in a document line).
  bool scalar() {
    size_t start = i;
    while (i < s.size() && s[i] != ',' && s[i] != '}' && s[i] != ' ') ++i;
    return i > start ? true : fail("expected a value");
  }
};

}  // namespace

bool parse_document_line(const std::string& line, CorpusDocument& doc, std::string& error) {
  Reader r{line, 0, {}};
  doc = CorpusDocument{};
  bool have_text = false;
  r.ws();
  if (r.i >= line.size() || line[r.i] != '{') {
    error = "expected a JSON object";
    return false;
  }
  ++r.i;
  r.ws();
  if (r.i < line.size() && line[r.i] == '}') {
    ++r.i;
  } else {
    while (true) {
      std::string key, value;
      r.ws();
      if (!r.string(key)) break;
      r.ws();
      if (r.i >= line.size() || line[r.i] != ':') { r.fail("expected ':'"); break; }
      ++r.i;
      r.ws();
      if (r.i < line.size() && line[r.i] == '"') {
        if (!r.string(value)) break;
        if (key == "text") doc.text = std::move(value), have_text = true;
        else if (key == "id") doc.id = std::move(value);
        else if (key == "source") doc.source = std::move(value);
      } else if (!r.scalar()) {
        break;
      }
      r.ws();
      if (r.i < line.size() && line[r.i] == ',') { ++r.i; continue; }
      if (r.i < line.size() && line[r.i] == '}') { ++r.i; break; }
      r.fail("expected ',' or '}'");
      break;
    }
  }
  if (r.error.empty()) {
    r.ws();
    if (r.i != line.size()) r.fail("trailing characters");
  }
  if (r.error.empty() && !have_text) r.error = "no \"text\" field";
  error = r.error;
  return error.empty();
}

std::string corpus_split_path(const std::string& dir, const std::string& split) {
  COIL_CHECK(fs::is_directory(dir), "corpus directory '", dir,
             "' does not exist (create one with 'coil data prepare --out ", dir, "')");
  const std::string path = (fs::path(dir) / (split + ".jsonl")).string();
  COIL_CHECK(fs::is_regular_file(path), "corpus file '", path, "' is missing (expected ", split,
             ".jsonl as written by 'coil data prepare')");
  return path;
}

int64_t for_each_document(const std::string& jsonl_path,
                          const std::function<void(CorpusDocument&&)>& fn) {
  std::ifstream in(jsonl_path, std::ios::binary);
  COIL_CHECK(in.good(), "cannot open corpus file '", jsonl_path, "'");
  std::string line, error;
  int64_t lineno = 0, n = 0;
  CorpusDocument doc;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty() || line == "\r") continue;
    COIL_CHECK(parse_document_line(line, doc, error), jsonl_path, ":", lineno,
               ": not a corpus document line (", error, ")");
    fn(std::move(doc));
    ++n;
  }
  COIL_CHECK(in.eof(), "error reading corpus file '", jsonl_path, "' after line ", lineno);
  return n;
}

std::string corpus_script_path() {
  if (const char* env = std::getenv("COIL_CORPUS_SCRIPT"); env && *env) {
    COIL_CHECK(fs::is_regular_file(env), "COIL_CORPUS_SCRIPT='", env, "' is not a file");
    return env;
  }
  const fs::path p = fs::path(COIL_DATA_SOURCE_DIR) / "corpus" / "prepare_corpus.py";
  COIL_CHECK(fs::is_regular_file(p), "corpus builder script '", p.string(),
             "' not found (set COIL_CORPUS_SCRIPT to data/corpus/prepare_corpus.py of a coil checkout)");
  return p.string();
}

namespace {
std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += (c == '\'') ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}
}  // namespace

int prepare_corpus(const PrepareCorpusOptions& opt) {
  COIL_CHECK(!opt.out_dir.empty(), "prepare_corpus: an output directory is required");
  std::ostringstream cmd;
  cmd << "python3 " << shell_quote(corpus_script_path()) << " --out " << shell_quote(opt.out_dir)
      << " --max-mb " << opt.max_mb << " --sources " << shell_quote(opt.sources) << " --seed "
      << opt.seed << " --heldout-fraction " << opt.heldout_fraction;
  if (!opt.install) cmd << " --no-install";
  const int status = std::system(cmd.str().c_str());
  COIL_CHECK(status != -1, "could not run '", cmd.str(), "'");
  if (WIFEXITED(status)) {
    COIL_CHECK(WEXITSTATUS(status) != 127, "python3 not found: the corpus builder needs it (",
               cmd.str(), ")");
    return WEXITSTATUS(status);
  }
  return 1;
}

}  // namespace coil
