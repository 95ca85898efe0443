// How many threads a process uses when the config says "all cores" (run.threads: 0, data.workers: 0)
// and a launcher started several processes on this node: each gets its share of the cores, not all
// of them (8 ranks x all cores = 8 threads per core), and the OMP_NUM_THREADS a launcher or the user
// set is respected for compute. No torch here: cheap to compile and to test.
#pragma once
#include <functional>
#include <string>

namespace prom {

using EnvLookup = std::function<const char*(const char*)>;  // getenv, or a map in tests

struct ThreadChoice {
  int compute = 1;     // LibTorch intra-op threads
  int decode = 1;      // data loading threads (data.workers)
  std::string why;     // one line, printed at start: where each number came from
};

// run_threads / data_workers > 0 are used as given. 0 means:
// - compute: OMP_NUM_THREADS when set (its first entry), else cores / local ranks, at least 1;
// - decode: cores / local ranks, at least 1;
// local ranks: LOCAL_WORLD_SIZE (torchrun, scripts/launch_local.sh), else SLURM_NTASKS_PER_NODE
// (srun), else 1. A malformed value is a prom::ConfigError naming the variable.
ThreadChoice choose_threads(int run_threads, int data_workers, int cores, const EnvLookup& getenv);
ThreadChoice choose_threads(int run_threads, int data_workers, int cores);  // the process environment

// The decode half alone (the data loader's default): data_workers, or cores / local ranks.
int decode_threads(int data_workers, int cores);

}  // namespace prom
