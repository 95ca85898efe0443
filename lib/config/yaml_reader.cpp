#include <algorithm>
#include <cmath>
#include <sstream>

#include "config/schema.h"

namespace prom::config {
namespace {

std::string node_text(const YAML::Node& n) {
  if (!n || n.IsNull()) return "nothing";
  if (n.IsScalar()) return "'" + n.Scalar() + "'";
  if (n.IsSequence()) return "a list";
  if (n.IsMap()) return "a map";
  return "an unknown value";
}

}  // namespace

std::string format_number(double v) {
  std::ostringstream ss;
  ss.precision(12);
  ss << v;
  return ss.str();
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string closest(const std::string& word, const std::vector<std::string>& candidates) {
  std::string best;
  size_t best_d = std::max<size_t>(2, word.size() / 3) + 1;
  for (const auto& c : candidates) {
    size_t d = edit_distance(word, c);
    if (d < best_d) {
      best_d = d;
      best = c;
    }
  }
  return best;
}

Reader::Reader(YAML::Node node, std::string prefix, std::string file, SeenKeys* seen)
    : node_(std::move(node)), prefix_(std::move(prefix)), file_(std::move(file)), seen_(seen) {}

void Reader::fail(const YAML::Node& at, const std::string& key_path, const std::string& message) const {
  Origin o{file_, 0};
  // Overrides from the command line ("--set k=v") have no line worth naming.
  bool from_file = file_.rfind("--set ", 0) != 0;
  if (from_file && at && at.Mark().line >= 0) o.line = at.Mark().line + 1;
  throw ConfigError(o.str() + ": " + key_path + ": " + message);
}

void Reader::check_keys(const std::vector<std::string>& declared) const {
  std::set<std::string> given;
  for (auto it = node_.begin(); it != node_.end(); ++it) {
    if (!it->first.IsScalar()) fail(it->first, prefix_.empty() ? "(top level)" : prefix_, "keys must be plain names");
    std::string key = it->first.Scalar();
    // yaml-cpp keeps only one of two equal keys; a silent loss of settings is worse than an error.
    if (!given.insert(key).second) fail(it->first, path(key), "key given twice");
    if (std::find(declared.begin(), declared.end(), key) != declared.end()) continue;
    std::string hint = closest(key, declared);
    std::string message = "unknown key";
    if (!hint.empty()) message += " (did you mean '" + path(hint) + "'?)";
    fail(it->first, path(key), message);
  }
}

void Reader::mark_seen(const YAML::Node& n, const std::string& key_path) {
  const bool from_file = file_.rfind("--set ", 0) != 0;  // an override's "line 1" means nothing
  Origin o{file_, from_file && n.Mark().line >= 0 ? n.Mark().line + 1 : 0};
  (*seen_)[key_path] = o;
}

YAML::Node Reader::scalar(const char* key) {
  YAML::Node n = node_[key];
  if (!n) return n;
  if (!n.IsScalar()) fail(n, path(key), "expected a single value, got " + node_text(n));
  mark_seen(n, path(key));
  return n;
}

void Reader::expect_map(const YAML::Node& n, const char* key) const {
  if (!n.IsMap()) fail(n, path(key), "expected a map of keys, got " + node_text(n));
}

void Reader::expect_map_at(const YAML::Node& n, const std::string& key_path) const {
  if (!n.IsMap()) fail(n, key_path, "expected a map of keys, got " + node_text(n));
}

void Reader::expect_sequence(const YAML::Node& n, const char* key) const {
  if (!n.IsSequence()) fail(n, path(key), "expected a list, got " + node_text(n));
}

void Reader::check_number(const YAML::Node& n, const std::string& key_path, double value, const Rule& r) const {
  if (!std::isfinite(value)) fail(n, key_path, "must be a finite number, got " + node_text(n));
  bool low = r.min_open ? value <= r.min : value < r.min;
  if (low || value > r.max) {
    std::string range;
    if (std::isinf(r.max)) range = (r.min_open ? "> " : ">= ") + format_number(r.min);
    else range = "in [" + format_number(r.min) + ", " + format_number(r.max) + "]";
    fail(n, key_path, "value " + format_number(value) + " is out of range: must be " + range);
  }
}

void Reader::field(const char* key, bool& v, const Rule&) {
  YAML::Node n = scalar(key);
  if (!n) return;
  const std::string& s = n.Scalar();
  if (s == "true" || s == "True" || s == "yes") v = true;
  else if (s == "false" || s == "False" || s == "no") v = false;
  else fail(n, path(key), "expected true or false, got " + node_text(n));
}

void Reader::field(const char* key, int64_t& v, const Rule& r) {
  YAML::Node n = scalar(key);
  if (!n) return;
  int64_t parsed = 0;
  try {
    parsed = n.as<int64_t>();
  } catch (const YAML::Exception&) {
    fail(n, path(key), "expected an integer, got " + node_text(n));
  }
  check_number(n, path(key), static_cast<double>(parsed), r);
  v = parsed;
}

void Reader::field(const char* key, int& v, const Rule& r) {
  int64_t wide = v;
  Rule narrowed = r;
  narrowed.min = std::max(r.min, static_cast<double>(std::numeric_limits<int>::min()));
  narrowed.max = std::min(r.max, static_cast<double>(std::numeric_limits<int>::max()));
  field(key, wide, narrowed);
  v = static_cast<int>(wide);
}

void Reader::field(const char* key, double& v, const Rule& r) {
  YAML::Node n = scalar(key);
  if (!n) return;
  double parsed = 0;
  try {
    parsed = n.as<double>();
  } catch (const YAML::Exception&) {
    fail(n, path(key), "expected a number, got " + node_text(n));
  }
  check_number(n, path(key), parsed, r);
  v = parsed;
}

void Reader::field(const char* key, std::string& v, const Rule& r) {
  YAML::Node n = scalar(key);
  if (!n) return;
  if (n.IsNull()) fail(n, path(key), "expected a string, got nothing");
  std::string s = n.Scalar();
  if (!r.one_of.empty() && std::find(r.one_of.begin(), r.one_of.end(), s) == r.one_of.end()) {
    std::string allowed;
    for (const auto& a : r.one_of) allowed += (allowed.empty() ? "" : ", ") + a;
    std::string hint = closest(s, r.one_of);
    fail(n, path(key), "'" + s + "' is not one of: " + allowed + (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
  }
  v = s;
}

void Reader::field(const char* key, std::vector<double>& v, const Rule& r) {
  YAML::Node n = node_[key];
  if (!n) return;
  expect_sequence(n, key);
  mark_seen(n, path(key));
  std::vector<double> out;
  for (size_t i = 0; i < n.size(); ++i) {
    std::string p = path(key) + "[" + std::to_string(i) + "]";
    double x = 0;
    try {
      x = n[i].as<double>();
    } catch (const YAML::Exception&) {
      fail(n[i], p, "expected a number, got " + node_text(n[i]));
    }
    check_number(n[i], p, x, r);
    out.push_back(x);
  }
  v = std::move(out);
}

void Reader::field(const char* key, std::vector<int64_t>& v, const Rule& r) {
  YAML::Node n = node_[key];
  if (!n) return;
  expect_sequence(n, key);
  mark_seen(n, path(key));
  std::vector<int64_t> out;
  for (size_t i = 0; i < n.size(); ++i) {
    std::string p = path(key) + "[" + std::to_string(i) + "]";
    int64_t x = 0;
    try {
      x = n[i].as<int64_t>();
    } catch (const YAML::Exception&) {
      fail(n[i], p, "expected an integer, got " + node_text(n[i]));
    }
    check_number(n[i], p, static_cast<double>(x), r);
    out.push_back(x);
  }
  v = std::move(out);
}

void Reader::field(const char* key, std::vector<std::string>& v, const Rule& r) {
  YAML::Node n = node_[key];
  if (!n) return;
  expect_sequence(n, key);
  mark_seen(n, path(key));
  std::vector<std::string> out;
  for (size_t i = 0; i < n.size(); ++i) {
    std::string p = path(key) + "[" + std::to_string(i) + "]";
    if (!n[i].IsScalar()) fail(n[i], p, "expected a string, got " + node_text(n[i]));
    std::string s = n[i].Scalar();
    if (!r.one_of.empty() && std::find(r.one_of.begin(), r.one_of.end(), s) == r.one_of.end())
      fail(n[i], p, "'" + s + "' is not an allowed value");
    out.push_back(s);
  }
  v = std::move(out);
}

void Writer::write(double v) {
  // Round-trippable and readable: 0.045 stays 0.045, 4e-05 stays 4e-05.
  std::string s = format_number(v);
  if (s.find_first_of(".en") == std::string::npos) s += ".0";
  out_ << s;
}

void RequiredChecker::missing(const char* key) const {
  // Point at the section that should hold the key, if some layer gave that section.
  Origin where{top_file_, 0};
  auto it = seen_->find(prefix_);
  if (!prefix_.empty() && it != seen_->end()) where = it->second;
  throw ConfigError(where.str() + ": " + path(key) + ": missing required key");
}

}  // namespace prom::config
