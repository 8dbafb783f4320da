// The data commands of the built `coil`: help, usage errors (exit 2), errors (exit 1, one line
// naming the problem), and tokenize + info on a tiny corpus with the byte tokenizer.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <string>

#include "data/dataset.h"
#include "data_test_util.h"

namespace coil {
namespace {

using datatest::TempDir;

std::pair<int, std::string> run(const std::string& args) {
  std::string out;
  FILE* p = popen((std::string(COIL_EXE) + " " + args + " 2>&1").c_str(), "r");
  if (!p) return {-1, ""};
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) out.append(buf.data(), n);
  const int status = pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(DataCli, HelpAndUsageErrors) {
  for (const char* cmd : {"data --help", "data prepare --help", "data tokenize --help", "data info --help",
                          "tokenizer --help", "tokenizer train --help"}) {
    const auto [rc, out] = run(cmd);
    EXPECT_EQ(rc, 0) << cmd << "\n" << out;
    EXPECT_NE(out.find("usage: coil"), std::string::npos) << cmd;
  }
  EXPECT_NE(run("--help").second.find("data tokenize"), std::string::npos);
  for (const char* cmd : {"data", "data bogus", "data tokenize --corpus x", "data tokenize --frob 1",
                          "data prepare", "data prepare --out x --max-mb zero", "tokenizer",
                          "tokenizer train --out x", "tokenizer train --corpus c --out x --vocab 12"}) {
    const auto [rc, out] = run(cmd);
    EXPECT_EQ(rc, 2) << cmd << "\n" << out;
  }
}

TEST(DataCli, TokenizeAndInfoWithBytes) {
  TempDir dir;
  datatest::write_jsonl(dir.file("train.jsonl"), {"alpha beta", "gamma\ndelta", "epsilon"});
  datatest::write_jsonl(dir.file("heldout.jsonl"), {"omega"});
  const std::string out = dir.file("shards");
  auto [rc, text] = run("data tokenize --corpus " + dir.path().string() + " --tokenizer bytes --out " + out);
  ASSERT_EQ(rc, 0) << text;
  EXPECT_NE(text.find("bytes-v1"), std::string::npos) << text;
  const TokenDataset ds = TokenDataset::open_split(out, "train");
  EXPECT_EQ(ds.num_docs(), 3u);
  EXPECT_EQ(ds.num_tokens(), 10u + 11u + 7u);
  std::tie(rc, text) = run("data info " + out + " " + out + "/heldout-00000.bin");
  EXPECT_EQ(rc, 0) << text;
  EXPECT_NE(text.find("28 tokens, 3 documents"), std::string::npos) << text;
  EXPECT_NE(text.find("5 tokens, 1 documents"), std::string::npos) << text;
}

TEST(DataCli, ErrorsNameTheProblem) {
  TempDir dir;
  auto [rc, text] = run("data tokenize --corpus " + dir.file("none") + " --tokenizer bytes --out " + dir.file("o"));
  EXPECT_EQ(rc, 1);
  EXPECT_NE(text.find("error: corpus directory"), std::string::npos) << text;
  std::ofstream(dir.file("bad.bin")) << "garbage";
  std::tie(rc, text) = run("data info " + dir.file("bad.bin"));
  EXPECT_EQ(rc, 1);
  EXPECT_NE(text.find("bad.bin"), std::string::npos) << text;
  EXPECT_NE(text.find("truncated"), std::string::npos) << text;
  std::tie(rc, text) = run("data tokenize --corpus " + dir.path().string() + " --tokenizer " +
                           dir.file("no.model") + " --out " + dir.file("o"));
  EXPECT_EQ(rc, 1);
  EXPECT_NE(text.find("no.model"), std::string::npos) << text;
}

}  // namespace
}  // namespace coil
