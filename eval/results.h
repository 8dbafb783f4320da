// Evaluation results: lm-evaluation-harness's results layout (task -> metric -> value, with
// "<metric>_stderr" beside each metric that has one), written as JSON:
//   {"results": {"piqa": {"acc": 0.61, "acc_stderr": 0.011, "acc_norm": ...}, ...},
//    "n-samples": {"piqa": 1838, ...},
//    "config": {"checkpoint": ..., "step": ..., "mixer": ..., "ranks": ..., ...},
//    "details": {"passkey": {...per length x depth...}, "decode": {...}}}
// plus the printed table and the side-by-side comparison of several result files.
#pragma once

#include <cstdint>
#include <iosfwd>
#include <limits>
#include <string>
#include <utility>
#include <vector>

namespace coil {

struct TaskMetric {
  std::string name;
  double value = 0;
  double stderr_value = std::numeric_limits<double>::quiet_NaN();  // NaN: none
};

struct TaskResult {
  std::string task;
  std::vector<TaskMetric> metrics;
  int64_t samples = 0;
  std::string details_json;  // a JSON object (already serialised) or "" for none
};

struct EvalReport {
  std::vector<TaskResult> tasks;
  std::vector<std::pair<std::string, std::string>> config;  // key -> JSON value (serialised)
};

std::string report_to_json(const EvalReport& report);
// Reads a results file written by report_to_json (or any file of that layout); throws coil::Error
// naming the file on a missing file, bad JSON or a missing "results" mapping.
EvalReport read_report(const std::string& path);

void print_report_table(const EvalReport& report, std::ostream& out);
// One row per (task, metric), one column per report; labels are the column headers.
void print_comparison(const std::vector<EvalReport>& reports, const std::vector<std::string>& labels,
                      std::ostream& out);

// JSON helpers for building details_json.
std::string json_string(const std::string& s);
std::string json_number(double v);  // NaN / Inf -> null

}  // namespace coil
