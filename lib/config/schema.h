// The config schema machinery. Each config struct lists its keys once, in
//   template <class V> void visit(V& v) { v.field("lr", lr, at_least(0)); v.section("ema", ema); ... }
// and the visitors below read YAML strictly, write it back, list keys and check required ones.
// A key is therefore declared in exactly one place, with its type, default and valid range.
#pragma once
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <limits>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/error.h"

namespace prom::config {

// Validity rule of one key.
struct Rule {
  double min = -std::numeric_limits<double>::infinity();
  double max = std::numeric_limits<double>::infinity();
  bool min_open = false;               // min itself excluded
  std::vector<std::string> one_of;     // allowed string values (empty: any)
  bool required = false;
  Rule req() const { Rule r = *this; r.required = true; return r; }
};
inline Rule at_least(double lo) { Rule r; r.min = lo; return r; }
inline Rule above(double lo) { Rule r; r.min = lo; r.min_open = true; return r; }
inline Rule between(double lo, double hi) { Rule r; r.min = lo; r.max = hi; return r; }
inline Rule one_of(std::vector<std::string> v) { Rule r; r.one_of = std::move(v); return r; }
inline Rule required() { Rule r; r.required = true; return r; }

// Where a value came from: a file and line, or a --set override.
struct Origin {
  std::string file;
  int line = 0;  // 1-based; 0 when unknown
  std::string str() const { return line > 0 ? file + ":" + std::to_string(line) : file; }
};

// Which key paths were given by some layer (file, base file or --set), and where.
using SeenKeys = std::map<std::string, Origin>;

// Collects the key names a struct declares (for unknown-key checks and "did you mean").
class KeyLister {
 public:
  std::vector<std::string> keys;
  template <class T> void field(const char* key, T&, const Rule& = {}) { keys.emplace_back(key); }
  template <class S> void section(const char* key, S&) { keys.emplace_back(key); }
  template <class S> void list(const char* key, std::vector<S>&) { keys.emplace_back(key); }
};

template <class S>
std::vector<std::string> keys_of() {
  S probe{};
  KeyLister lister;
  probe.visit(lister);
  return lister.keys;
}

// Reads one YAML map into a struct, strictly. Keys absent from the YAML keep their current value,
// so layers (base file, file, --set) apply one after the other.
class Reader {
 public:
  Reader(YAML::Node node, std::string prefix, std::string file, SeenKeys* seen);

  // Throws ConfigError for any key of the map that the struct does not declare.
  void check_keys(const std::vector<std::string>& declared) const;

  void field(const char* key, bool& v, const Rule& r = {});
  void field(const char* key, int& v, const Rule& r = {});
  void field(const char* key, int64_t& v, const Rule& r = {});
  void field(const char* key, double& v, const Rule& r = {});
  void field(const char* key, std::string& v, const Rule& r = {});
  void field(const char* key, std::vector<double>& v, const Rule& r = {});
  void field(const char* key, std::vector<int64_t>& v, const Rule& r = {});
  void field(const char* key, std::vector<std::string>& v, const Rule& r = {});

  template <class S>
  void section(const char* key, S& s) {
    YAML::Node child = node_[key];
    if (!child) return;
    expect_map(child, key);
    mark_seen(child, path(key));
    Reader sub(child, path(key), file_, seen_);
    sub.check_keys(keys_of<S>());
    s.visit(sub);
  }

  // A sequence of maps; a layer that gives it replaces the whole list.
  template <class S>
  void list(const char* key, std::vector<S>& v) {
    YAML::Node child = node_[key];
    if (!child) return;
    expect_sequence(child, key);
    mark_seen(child, path(key));
    std::vector<S> out;
    for (size_t i = 0; i < child.size(); ++i) {
      std::string item_path = path(key) + "[" + std::to_string(i) + "]";
      expect_map_at(child[i], item_path);
      S item{};
      Reader sub(child[i], item_path, file_, seen_);
      sub.check_keys(keys_of<S>());
      item.visit(sub);
      out.push_back(std::move(item));
    }
    v = std::move(out);
  }

  // Error at a node: "file:line: key.path: message".
  [[noreturn]] void fail(const YAML::Node& at, const std::string& key_path, const std::string& message) const;

 private:
  std::string path(const std::string& key) const { return prefix_.empty() ? key : prefix_ + "." + key; }
  YAML::Node scalar(const char* key);  // null when absent; throws when not a scalar
  void expect_map(const YAML::Node& n, const char* key) const;
  void expect_map_at(const YAML::Node& n, const std::string& key_path) const;
  void expect_sequence(const YAML::Node& n, const char* key) const;
  void mark_seen(const YAML::Node& n, const std::string& key_path);
  void check_number(const YAML::Node& n, const std::string& key_path, double value, const Rule& r) const;

  YAML::Node node_;
  std::string prefix_;
  std::string file_;
  SeenKeys* seen_;
};

// Writes a struct as YAML (the fully resolved config).
class Writer {
 public:
  explicit Writer(YAML::Emitter& out) : out_(out) {}
  template <class T>
  void field(const char* key, const T& v, const Rule& = {}) {
    out_ << YAML::Key << key << YAML::Value;
    write(v);
  }
  template <class S>
  void section(const char* key, S& s) {
    out_ << YAML::Key << key << YAML::Value << YAML::BeginMap;
    s.visit(*this);
    out_ << YAML::EndMap;
  }
  template <class S>
  void list(const char* key, std::vector<S>& v) {
    out_ << YAML::Key << key << YAML::Value << YAML::BeginSeq;
    for (auto& item : v) {
      out_ << YAML::BeginMap;
      item.visit(*this);
      out_ << YAML::EndMap;
    }
    out_ << YAML::EndSeq;
  }

 private:
  void write(bool v) { out_ << (v ? "true" : "false"); }
  void write(int v) { out_ << v; }
  void write(int64_t v) { out_ << v; }
  void write(double v);
  void write(const std::string& v) { out_ << YAML::DoubleQuoted << v; }
  template <class T>
  void write(const std::vector<T>& v) {
    out_ << YAML::Flow << YAML::BeginSeq;
    for (const auto& x : v) write(x);
    out_ << YAML::EndSeq;
  }
  YAML::Emitter& out_;
};

// After all layers: every required key must have been given somewhere.
class RequiredChecker {
 public:
  RequiredChecker(std::string prefix, const SeenKeys* seen, std::string top_file)
      : prefix_(std::move(prefix)), seen_(seen), top_file_(std::move(top_file)) {}
  template <class T>
  void field(const char* key, T&, const Rule& r = {}) {
    if (r.required && !seen_->count(path(key))) missing(key);
  }
  template <class S>
  void section(const char* key, S& s) {
    RequiredChecker sub(path(key), seen_, top_file_);
    s.visit(sub);
  }
  template <class S>
  void list(const char*, std::vector<S>&) {}

 private:
  std::string path(const std::string& key) const { return prefix_.empty() ? key : prefix_ + "." + key; }
  [[noreturn]] void missing(const char* key) const;
  std::string prefix_;
  const SeenKeys* seen_;
  std::string top_file_;
};

// Shortest text that reads back as the same double (0.045, 4e-05, 1).
std::string format_number(double v);

// Edit distance, for "did you mean".
size_t edit_distance(const std::string& a, const std::string& b);
// The closest candidate within a small distance, or "".
std::string closest(const std::string& word, const std::vector<std::string>& candidates);

}  // namespace prom::config
