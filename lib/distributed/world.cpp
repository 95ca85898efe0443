#include "distributed/world.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "core/error.h"

namespace prom::dist {
namespace {

// A whole decimal integer in [lo, hi], or ConfigError naming the variable.
int parse_int(const char* name, const std::string& value, int lo, int hi) {
  size_t i = 0;
  while (i < value.size() && std::isspace(static_cast<unsigned char>(value[i]))) ++i;
  std::string v = value.substr(i);
  while (!v.empty() && std::isspace(static_cast<unsigned char>(v.back()))) v.pop_back();
  bool ok = !v.empty() && v.size() <= 9;
  for (char c : v) ok = ok && std::isdigit(static_cast<unsigned char>(c));
  const long n = ok ? std::strtol(v.c_str(), nullptr, 10) : -1;
  if (!ok || n < lo || n > hi)
    throw ConfigError(std::string(name) + "='" + value + "': expected an integer in [" + std::to_string(lo) + ", " +
                      std::to_string(hi) + "]");
  return static_cast<int>(n);
}

// a > b for decimal digit strings of any length (std::stol throws on the long ones).
bool digits_greater(std::string a, std::string b) {
  a.erase(0, std::min(a.find_first_not_of('0'), a.size()));
  b.erase(0, std::min(b.find_first_not_of('0'), b.size()));
  return a.size() != b.size() ? a.size() > b.size() : a > b;
}

}  // namespace

std::string first_slurm_host(const std::string& nodelist) {
  auto bad = [&](const std::string& why) {
    return ConfigError("SLURM_JOB_NODELIST='" + nodelist + "': " + why);
  };
  if (nodelist.empty()) throw bad("empty");
  // The first entry ends at the first comma outside brackets.
  std::string prefix, range;
  size_t i = 0;
  for (; i < nodelist.size() && nodelist[i] != ',' && nodelist[i] != '['; ++i) {
    if (nodelist[i] == ']') throw bad("']' without '['");
    prefix += nodelist[i];
  }
  if (prefix.empty()) throw bad("a host name is missing");
  if (i == nodelist.size() || nodelist[i] == ',') return prefix;
  const size_t close = nodelist.find(']', i);
  if (close == std::string::npos) throw bad("'[' without ']'");
  range = nodelist.substr(i + 1, close - i - 1);
  if (close + 1 < nodelist.size() && nodelist[close + 1] != ',')
    throw bad("only one bracketed range per host name is supported");
  // The first item of the range: "01-04,07" -> "01" (zero padding kept, as SLURM writes it).
  std::string first = range.substr(0, range.find_first_of(",-"));
  if (first.empty()) throw bad("empty range '[" + range + "]'");
  for (char c : range)
    if (!std::isdigit(static_cast<unsigned char>(c)) && c != ',' && c != '-') throw bad("bad range '[" + range + "]'");
  for (size_t a = 0; a <= range.size();) {  // every item must be N or N-M with N <= M
    size_t b = range.find(',', a);
    if (b == std::string::npos) b = range.size();
    std::string item = range.substr(a, b - a);
    const size_t dash = item.find('-');
    if (item.empty() || dash == 0 || dash + 1 == item.size() ||
        (dash != std::string::npos && item.find('-', dash + 1) != std::string::npos))
      throw bad("bad range item '" + item + "'");
    if (dash != std::string::npos && digits_greater(item.substr(0, dash), item.substr(dash + 1)))
      throw bad("descending range '" + item + "'");
    a = b + 1;
  }
  return prefix + first;
}

WorldInfo detect_world(const EnvLookup& getenv) {
  auto get = [&](const char* name) -> const char* {
    const char* v = getenv(name);
    return v != nullptr && *v != '\0' ? v : nullptr;
  };
  WorldInfo w;
  constexpr int kMaxRanks = 1 << 20;
  if (get("WORLD_SIZE") != nullptr || get("RANK") != nullptr) {
    w.launcher = "torchrun";
    for (const char* n : {"RANK", "WORLD_SIZE"})
      if (get(n) == nullptr) throw ConfigError(std::string(n) + " is not set but " +
                                               (std::string(n) == "RANK" ? "WORLD_SIZE" : "RANK") +
                                               " is (torchrun-style launch needs both)");
    w.world_size = parse_int("WORLD_SIZE", get("WORLD_SIZE"), 1, kMaxRanks);
    w.rank = parse_int("RANK", get("RANK"), 0, w.world_size - 1);
    w.local_rank = get("LOCAL_RANK") ? parse_int("LOCAL_RANK", get("LOCAL_RANK"), 0, kMaxRanks) : 0;
    if (w.world_size > 1) {
      if (get("MASTER_ADDR") == nullptr) throw ConfigError("MASTER_ADDR is not set (WORLD_SIZE > 1 needs it)");
      if (get("MASTER_PORT") == nullptr) throw ConfigError("MASTER_PORT is not set (WORLD_SIZE > 1 needs it)");
    }
  } else if (get("SLURM_PROCID") != nullptr && get("SLURM_NTASKS") != nullptr) {
    w.launcher = "slurm";
    w.world_size = parse_int("SLURM_NTASKS", get("SLURM_NTASKS"), 1, kMaxRanks);
    w.rank = parse_int("SLURM_PROCID", get("SLURM_PROCID"), 0, w.world_size - 1);
    w.local_rank = get("SLURM_LOCALID") ? parse_int("SLURM_LOCALID", get("SLURM_LOCALID"), 0, kMaxRanks) : 0;
    if (w.world_size > 1 && get("MASTER_ADDR") == nullptr) {
      const char* list = get("SLURM_JOB_NODELIST") ? get("SLURM_JOB_NODELIST") : get("SLURM_NODELIST");
      if (list == nullptr) throw ConfigError("SLURM_JOB_NODELIST is not set (set MASTER_ADDR instead)");
      w.master_addr = first_slurm_host(list);
    }
    // MASTER_PORT may be left unset under SLURM: a port derived from the job id avoids clashes
    // between jobs sharing a node.
    if (get("MASTER_PORT") == nullptr && get("SLURM_JOB_ID") != nullptr)
      w.master_port = 20000 + parse_int("SLURM_JOB_ID", get("SLURM_JOB_ID"), 0, 999999999) % 20000;
  } else {
    return w;
  }
  if (get("MASTER_ADDR") != nullptr) w.master_addr = get("MASTER_ADDR");
  if (get("MASTER_PORT") != nullptr) w.master_port = parse_int("MASTER_PORT", get("MASTER_PORT"), 1, 65535);
  return w;
}

WorldInfo detect_world() {
  return detect_world([](const char* name) { return std::getenv(name); });
}

int64_t per_rank_batch(int64_t global_batch, int world_size) {
  if (global_batch % world_size != 0)
    throw ConfigKeyError("train.batch_size: " + std::to_string(global_batch) +
                         " (the global batch) is not divisible by " + std::to_string(world_size) + " ranks");
  return global_batch / world_size;
}

}  // namespace prom::dist
