#include "config/config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace prom::config {
namespace fs = std::filesystem;
namespace {

constexpr int kMaxBaseDepth = 16;
// Tensors a config makes prom allocate at once (a batch, a synthetic split) stay below this, so a
// typo such as batch_size: 10000000 is a config error, not an attempt to allocate terabytes.
constexpr double kMaxTensorBytes = 64.0 * (1ull << 30);

std::string gib(double bytes) { return format_number(std::round(bytes / (1ull << 30) * 10) / 10) + " GiB"; }

// The run directory is out_dir/name, so a name with a separator, or "." or "..", would put the run
// (and everything prom writes) outside out_dir.
bool is_plain_name(const std::string& name) {
  return !name.empty() && name != "." && name != ".." && name.find_first_of(std::string("/\\\0", 3)) == std::string::npos;
}

YAML::Node load_yaml_file(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw ConfigError(path + ": config file not found");
  if (fs::is_directory(path, ec)) throw ConfigError(path + ": is a directory, expected a YAML config file");
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot open config file");
  YAML::Node node;
  try {
    node = YAML::Load(in);
  } catch (const YAML::ParserException& e) {
    throw ConfigError(path + ":" + std::to_string(e.mark.line + 1) + ": invalid YAML: " + e.msg);
  } catch (const YAML::Exception& e) {
    throw ConfigError(path + ": invalid YAML: " + e.msg);
  }
  if (!node || node.IsNull()) throw ConfigError(path + ": config file is empty");
  if (!node.IsMap()) throw ConfigError(path + ":1: the top level must be a map of sections (run, model, data, ...)");
  return node;
}

void apply_layer(Config& config, const YAML::Node& node, const std::string& origin, SeenKeys* seen) {
  Reader reader(node, "", origin, seen);
  std::vector<std::string> top = keys_of<Config>();
  top.push_back("base");
  reader.check_keys(top);
  config.visit(reader);
}

// Applies the base chain of `path` (deepest first), then the file itself.
void apply_file(Config& config, const std::string& path, SeenKeys* seen, std::vector<std::string>* chain) {
  std::string canonical = fs::weakly_canonical(path).string();
  for (const auto& p : *chain)
    if (p == canonical) throw ConfigError(path + ": 'base' includes form a cycle");
  if (static_cast<int>(chain->size()) >= kMaxBaseDepth)
    throw ConfigError(path + ": 'base' includes nest deeper than " + std::to_string(kMaxBaseDepth));
  chain->push_back(canonical);
  YAML::Node node = load_yaml_file(path);
  if (YAML::Node base = node["base"]) {
    int line = base.Mark().line + 1;
    std::vector<YAML::Node> bases;
    if (base.IsSequence())
      for (const auto& b : base) bases.push_back(b);
    else
      bases.push_back(base);
    for (const auto& b : bases) {
      if (!b.IsScalar() || b.Scalar().empty())
        throw ConfigError(path + ":" + std::to_string(line) + ": base: expected the path of a YAML file or a list of them");
      fs::path base_path = fs::path(path).parent_path() / b.Scalar();
      std::error_code ec;
      if (!fs::exists(base_path, ec))
        throw ConfigError(path + ":" + std::to_string(line) + ": base: file not found: " + base_path.string());
      std::vector<std::string> branch = *chain;  // siblings may share a base; only ancestors form cycles
      apply_file(config, base_path.string(), seen, &branch);
    }
  }
  apply_layer(config, node, path, seen);
}

std::string line_of(const SeenKeys& seen, const std::string& key, const std::string& fallback) {
  auto it = seen.find(key);
  return it != seen.end() ? it->second.str() : fallback;
}

// Rules that involve more than one key.
void validate(const Config& c, const SeenKeys& seen) {
  auto fail = [&](const std::string& key, const std::string& msg) {
    throw ConfigError(line_of(seen, key, c.source) + ": " + key + ": " + msg);
  };
  const auto& tt = c.data.train_transform;
  if (tt.scale_min > tt.scale_max) fail("data.train_transform.scale_min", "must not exceed scale_max");
  if (tt.ratio_min > tt.ratio_max) fail("data.train_transform.ratio_min", "must not exceed ratio_max");
  const auto& et = c.data.eval_transform;
  if (et.crop > et.resize) fail("data.eval_transform.crop", "must not exceed eval_transform.resize");
  if (c.data.mean.size() != 3) fail("data.mean", "needs 3 values (one per RGB channel)");
  if (c.data.std.size() != 3) fail("data.std", "needs 3 values (one per RGB channel)");
  if (c.data.val_ground_truth.empty() != c.data.val_synsets.empty())
    fail(c.data.val_ground_truth.empty() ? "data.val_synsets" : "data.val_ground_truth",
         "a flat validation set needs both val_ground_truth and val_synsets");
  const std::string& d = c.run.device;
  bool device_ok = d == "auto" || d == "cpu" || d == "cuda";
  if (!device_ok && d.rfind("cuda:", 0) == 0 && d.size() > 5 && d.size() <= 9)
    device_ok = d.find_first_not_of("0123456789", 5) == std::string::npos;
  if (!device_ok) fail("run.device", "'" + d + "' is not one of: auto, cpu, cuda, cuda:N");
  if (!is_plain_name(c.run.name))
    fail("run.name", "'" + c.run.name + "' is not a plain folder name (no '/', not '.' or '..'): the run "
                     "directory is run.out_dir/run.name and prom writes nowhere else");
  for (size_t i = 0; i < c.quant.rules.size(); ++i) {
    const auto& w = c.quant.rules[i].weight;
    if (w.accumulator == "int16" && w.type != "ternary")
      fail("quant.rules[" + std::to_string(i) + "].weight.accumulator",
           "int16 is for ternary weights (an int8 layer's 3x3 or wider sums need int32)");
    if (w.scale != "fit_multiplier") continue;
    const std::string key = "quant.rules[" + std::to_string(i) + "].weight.scale";
    if (w.type != "int8") fail(key, "fit_multiplier is for int8 weights (a " + w.type + " weight has no scale to fit)");
    if (w.learned) fail(key, "fit_multiplier does not combine with learned: true (an LSQ scale is trained, not fitted)");
    if (w.granularity != "per_channel")
      fail(key, "fit_multiplier needs granularity per_channel (each channel's scale fits its own multiplier)");
    if (c.quant.requant == "fixed_point32")
      fail(key, "fit_multiplier needs quant.requant short or power_of_two (a 32-bit multiplier needs no fitting)");
  }
  const auto& syn = c.data.synthetic;
  const double image_bytes = syn.enabled ? 3.0 * syn.image_size * syn.image_size * 4
                                         : 3.0 * std::max(tt.crop, et.crop) * std::max(tt.crop, et.crop) * 4;
  if (static_cast<double>(c.train.batch_size) * image_bytes > kMaxTensorBytes)
    fail("train.batch_size", std::to_string(c.train.batch_size) + " images make a batch of " +
                                 gib(static_cast<double>(c.train.batch_size) * image_bytes) + ", more than the " +
                                 gib(kMaxTensorBytes) + " limit");
  if (syn.enabled && static_cast<double>(std::max(syn.samples, syn.eval_samples)) * image_bytes > kMaxTensorBytes)
    fail(syn.samples >= syn.eval_samples ? "data.synthetic.samples" : "data.synthetic.eval_samples",
         "the synthetic images are held in memory: " + std::to_string(std::max(syn.samples, syn.eval_samples)) +
             " of " + std::to_string(syn.image_size) + "x" + std::to_string(syn.image_size) + " px need " +
             gib(static_cast<double>(std::max(syn.samples, syn.eval_samples)) * image_bytes) + ", more than the " +
             gib(kMaxTensorBytes) + " limit");
}

void apply_override_layers(Config& config, const std::vector<std::string>& overrides, SeenKeys* seen) {
  for (const auto& item : overrides) {
    std::string origin = "--set " + item;
    auto eq = item.find('=');
    if (eq == std::string::npos || eq == 0) throw ConfigError(origin + ": expected KEY=VALUE, e.g. optim.lr=0.1");
    std::string key = item.substr(0, eq);
    std::vector<std::string> parts;
    std::stringstream ss(key);
    for (std::string part; std::getline(ss, part, '.');) {
      if (part.empty()) throw ConfigError(origin + ": empty component in key '" + key + "'");
      parts.push_back(part);
    }
    if (parts.size() < 2) throw ConfigError(origin + ": key must name a section and a key, e.g. train.epochs");
    YAML::Node node;
    try {
      node = YAML::Load(item.substr(eq + 1));
    } catch (const YAML::Exception& e) {
      throw ConfigError(origin + ": invalid value: " + e.msg);
    }
    for (auto it = parts.rbegin(); it != parts.rend(); ++it) {
      YAML::Node map(YAML::NodeType::Map);
      map[*it] = node;
      node = map;
    }
    apply_layer(config, node, origin, seen);
  }
}

}  // namespace

void apply_overrides(Config& config, const std::vector<std::string>& overrides) {
  SeenKeys seen;
  apply_override_layers(config, overrides, &seen);
  validate(config, seen);
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  Config config;
  config.source = path;
  SeenKeys seen;
  std::vector<std::string> chain;
  apply_file(config, path, &seen, &chain);
  apply_override_layers(config, overrides, &seen);
  validate(config, seen);
  RequiredChecker required("", &seen, path);
  config.visit(required);
  return config;
}

std::string to_yaml(Config& config) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  Writer writer(out);
  config.visit(writer);
  out << YAML::EndMap;
  return std::string(out.c_str()) + "\n";
}

}  // namespace prom::config
