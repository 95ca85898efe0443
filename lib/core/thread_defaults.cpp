#include "core/thread_defaults.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "core/error.h"

namespace prom {
namespace {

// A whole number in [1, 1048576] (OMP_NUM_THREADS may be a list "4,2" for nested levels: the first
// entry is this level's), or ConfigError naming the variable.
int positive(const char* name, const std::string& value, bool list_allowed) {
  std::string v = list_allowed ? value.substr(0, value.find(',')) : value;
  v.erase(0, std::min(v.find_first_not_of(" \t"), v.size()));
  v.erase(v.find_last_not_of(" \t") + 1);
  bool ok = !v.empty() && v.size() <= 7;
  for (char c : v) ok = ok && std::isdigit(static_cast<unsigned char>(c));
  const long n = ok ? std::strtol(v.c_str(), nullptr, 10) : 0;
  if (n < 1 || n > (1 << 20))
    throw ConfigError(std::string(name) + "='" + value + "': expected a whole number of " +
                      (std::string(name) == "OMP_NUM_THREADS" ? "threads" : "processes") + " >= 1");
  return static_cast<int>(n);
}

// cores / the ranks a launcher started on this node (at least 1), and how that was found.
int cores_per_local_rank(int cores, const EnvLookup& getenv, std::string& why) {
  cores = std::max(cores, 1);
  for (const char* name : {"LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"}) {
    const char* v = getenv(name);
    if (v == nullptr || *v == '\0') continue;
    const int local = positive(name, v, false);
    why = std::to_string(cores) + " cores / " + std::to_string(local) + " local ranks (" + name + ")";
    return std::max(1, cores / local);
  }
  why = "all " + std::to_string(cores) + " cores";
  return cores;
}

}  // namespace

ThreadChoice choose_threads(int run_threads, int data_workers, int cores, const EnvLookup& getenv) {
  std::string share;
  const int per_rank = cores_per_local_rank(cores, getenv, share);
  ThreadChoice c;
  std::string compute_why;
  const char* omp = getenv("OMP_NUM_THREADS");
  if (run_threads > 0) {
    c.compute = run_threads;
    compute_why = "run.threads";
  } else if (omp != nullptr && *omp != '\0') {
    c.compute = positive("OMP_NUM_THREADS", omp, true);
    compute_why = std::string("OMP_NUM_THREADS=") + omp;
  } else {
    c.compute = per_rank;
    compute_why = share;
  }
  c.decode = data_workers > 0 ? data_workers : per_rank;
  c.why = std::to_string(c.compute) + " compute (" + compute_why + "), " + std::to_string(c.decode) + " decode (" +
          (data_workers > 0 ? std::string("data.workers") : share) + ")";
  return c;
}

ThreadChoice choose_threads(int run_threads, int data_workers, int cores) {
  return choose_threads(run_threads, data_workers, cores, [](const char* name) { return std::getenv(name); });
}

int decode_threads(int data_workers, int cores) {
  if (data_workers > 0) return data_workers;
  std::string why;
  return cores_per_local_rank(cores, [](const char* name) { return std::getenv(name); }, why);
}

}  // namespace prom
