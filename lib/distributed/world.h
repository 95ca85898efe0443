// Where this process stands in a data-parallel job: rank, world size, local rank and the rendezvous
// address, read from the environment the launchers set, so one binary runs under torchrun and
// Kubernetes' PyTorchJob (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT), under srun
// (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, the first host of SLURM_JOB_NODELIST) and alone.
// No torch here: cheap to compile and to test.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace prom::dist {

struct WorldInfo {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  std::string launcher = "none";  // none | torchrun | slurm
  bool distributed() const { return world_size > 1; }
};

// Reads the variables through `getenv` (tests pass a map). torchrun's variables win over SLURM's;
// with neither, a single process. Malformed or inconsistent values throw prom::ConfigError with one
// line naming the variable.
using EnvLookup = std::function<const char*(const char*)>;
WorldInfo detect_world(const EnvLookup& getenv);
WorldInfo detect_world();  // the process environment

// The first host of a SLURM host list: "node[01-04,07],gpu5" -> "node01", "a,b" -> "a",
// "rack1-[3-5]" -> "rack1-3". Throws prom::ConfigError on a malformed list.
std::string first_slurm_host(const std::string& nodelist);

// train.batch_size (global) / world_size; ConfigError unless it divides.
int64_t per_rank_batch(int64_t global_batch, int world_size);

}  // namespace prom::dist
