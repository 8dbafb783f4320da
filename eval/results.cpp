// Results JSON, table and comparison (see results.h). JSON is read with yaml-cpp (JSON is a subset of
// YAML 1.2 for these files), so no further library is needed on nodes without package access.
#include "eval/results.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iomanip>
#include <map>
#include <ostream>
#include <sstream>

#include "core/error.h"

namespace coil {

std::string json_string(const std::string& s) {
  std::string o = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\t': o += "\\t"; break;
      case '\r': o += "\\r"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          o += buf;
        } else {
          o += char(c);
        }
    }
  }
  return o + "\"";
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string report_to_json(const EvalReport& r) {
  std::ostringstream o;
  o << "{\n  \"results\": {";
  for (size_t i = 0; i < r.tasks.size(); ++i) {
    const TaskResult& t = r.tasks[i];
    o << (i ? "," : "") << "\n    " << json_string(t.task) << ": {";
    bool first = true;
    for (const TaskMetric& m : t.metrics) {
      o << (first ? "" : ", ") << json_string(m.name) << ": " << json_number(m.value);
      first = false;
      if (!std::isnan(m.stderr_value))
        o << ", " << json_string(m.name + "_stderr") << ": " << json_number(m.stderr_value);
    }
    o << "}";
  }
  o << "\n  },\n  \"n-samples\": {";
  for (size_t i = 0; i < r.tasks.size(); ++i)
    o << (i ? ", " : "") << json_string(r.tasks[i].task) << ": " << r.tasks[i].samples;
  o << "},\n  \"config\": {";
  for (size_t i = 0; i < r.config.size(); ++i)
    o << (i ? ", " : "") << json_string(r.config[i].first) << ": " << r.config[i].second;
  o << "},\n  \"details\": {";
  bool first = true;
  for (const TaskResult& t : r.tasks) {
    if (t.details_json.empty()) continue;
    o << (first ? "" : ",") << "\n    " << json_string(t.task) << ": " << t.details_json;
    first = false;
  }
  o << "\n  }\n}\n";
  return o.str();
}

EvalReport read_report(const std::string& path) {
  std::ifstream in(path);
  COIL_CHECK(in.good(), "cannot open results file '", path, "'");
  YAML::Node root;
  try {
    root = YAML::Load(in);
  } catch (const YAML::Exception& e) {
    COIL_FAIL(path, ":", e.mark.line + 1, ": not a JSON results file: ", e.msg);
  }
  COIL_CHECK(root.IsMap() && root["results"] && root["results"].IsMap(), path,
             ": no \"results\" mapping (expected the layout written by 'coil eval --out')");
  EvalReport r;
  for (const auto& task : root["results"]) {
    TaskResult t;
    t.task = task.first.as<std::string>();
    COIL_CHECK(task.second.IsMap(), path, ": results.", t.task, " is not a mapping of metrics");
    std::map<std::string, double> values;
    std::vector<std::string> order;
    for (const auto& m : task.second) {
      std::string name = m.first.as<std::string>();
      // lm-eval 0.4 writes "acc,none" / "acc_stderr,none" (metric, filter): keep the metric name.
      if (const size_t comma = name.find(','); comma != std::string::npos) name.resize(comma);
      double v = std::numeric_limits<double>::quiet_NaN();
      if (!m.second.IsNull()) {
        try {
          v = m.second.as<double>();
        } catch (const YAML::Exception&) {
          continue;  // non-numeric entries (e.g. an "alias") are not metrics
        }
      }
      values[name] = v;
      order.push_back(name);
    }
    for (const std::string& name : order) {
      const std::string suffix = "_stderr";
      if (name.size() > suffix.size() &&
          name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0 &&
          values.count(name.substr(0, name.size() - suffix.size())))
        continue;
      TaskMetric m{name, values[name]};
      if (values.count(name + "_stderr")) m.stderr_value = values[name + "_stderr"];
      t.metrics.push_back(m);
    }
    if (root["n-samples"] && root["n-samples"][t.task]) t.samples = root["n-samples"][t.task].as<int64_t>();
    r.tasks.push_back(std::move(t));
  }
  return r;
}

namespace {

std::string fmt(double v, int prec = 4) {
  if (std::isnan(v)) return "-";
  std::ostringstream o;
  const double a = std::abs(v);
  if (a != 0 && (a >= 1e6 || a < 1e-3))
    o << std::setprecision(prec) << std::scientific << v;
  else
    o << std::fixed << std::setprecision(prec) << v;
  return o.str();
}

}  // namespace

void print_report_table(const EvalReport& r, std::ostream& out) {
  out << std::left << std::setw(22) << "task" << std::setw(26) << "metric" << std::right << std::setw(14)
      << "value" << std::setw(12) << "stderr" << std::setw(9) << "n" << "\n";
  for (const TaskResult& t : r.tasks)
    for (const TaskMetric& m : t.metrics)
      out << std::left << std::setw(22) << t.task << std::setw(26) << m.name << std::right << std::setw(14)
          << fmt(m.value) << std::setw(12) << fmt(m.stderr_value) << std::setw(9) << t.samples << "\n";
}

void print_comparison(const std::vector<EvalReport>& reports, const std::vector<std::string>& labels,
                      std::ostream& out) {
  COIL_CHECK(reports.size() == labels.size(), "compare: ", reports.size(), " reports, ", labels.size(),
             " labels");
  // Rows in first-seen order over all reports.
  std::vector<std::pair<std::string, std::string>> rows;
  for (const EvalReport& r : reports)
    for (const TaskResult& t : r.tasks)
      for (const TaskMetric& m : t.metrics)
        if (std::find(rows.begin(), rows.end(), std::make_pair(t.task, m.name)) == rows.end())
          rows.emplace_back(t.task, m.name);
  size_t w = 18;
  for (const std::string& l : labels) w = std::max(w, l.size() + 2);
  out << std::left << std::setw(22) << "task" << std::setw(26) << "metric" << std::right;
  for (const std::string& l : labels) out << std::setw(int(w)) << l;
  out << "\n";
  for (const auto& [task, metric] : rows) {
    out << std::left << std::setw(22) << task << std::setw(26) << metric << std::right;
    for (const EvalReport& r : reports) {
      std::string cell = "n/a";
      for (const TaskResult& t : r.tasks)
        if (t.task == task)
          for (const TaskMetric& m : t.metrics)
            if (m.name == metric)
              cell = fmt(m.value) + (std::isnan(m.stderr_value) ? "" : " +-" + fmt(m.stderr_value, 3));
      out << std::setw(int(w)) << cell;
    }
    out << "\n";
  }
}

}  // namespace coil
