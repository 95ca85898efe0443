// Data-parallel collectives on c10d: a process group (NCCL for CUDA tensors where the build has it,
// Gloo otherwise) that meets its peers through a c10d::TCPStore at MASTER_ADDR:MASTER_PORT (rank 0
// hosts it). Every failure -- a peer that died, a collective that outlived dist.timeout_s, a
// rendezvous that never completed -- becomes a prom::Error naming this rank, so that every rank
// exits non-zero instead of hanging.
#pragma once
#include <torch/torch.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "config/config.h"
#include "distributed/world.h"

namespace prom::dist {

class Comm {
 public:
  // Joins the job (blocks until all world_size ranks arrived or the timeout passed).
  // config.backend: see choose_backend() (distributed/backend.h): NCCL on CUDA, Gloo on CPU or when
  // asked for; a CUDA job without NCCL is a ConfigKeyError before the rendezvous.
  static std::shared_ptr<Comm> connect(const WorldInfo& world, const config::DistConfig& config,
                                       const torch::Device& device);
  ~Comm();

  int rank() const { return world_.rank; }
  int world_size() const { return world_.world_size; }
  bool is_main() const { return world_.rank == 0; }
  const std::string& backend() const { return backend_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

  // In-place sum over ranks of one contiguous tensor (the building block; blocking).
  void allreduce_sum(torch::Tensor& tensor);
  // In-place sum of tensors of any dtype/shape, coalesced into one flat buffer per dtype.
  void allreduce_sum(std::vector<torch::Tensor>& tensors);
  // Rank `root`'s values everywhere, coalesced per dtype.
  void broadcast(std::vector<torch::Tensor>& tensors, int root = 0);
  // Sums a few doubles over ranks (metrics, flags).
  std::vector<double> sum(const std::vector<double>& values);
  // Every rank's value, by rank.
  std::vector<int64_t> all_gather(int64_t value);

  // Starts an asynchronous in-place sum; wait() it before reading the tensor.
  struct Pending;
  std::shared_ptr<Pending> allreduce_async(torch::Tensor& tensor);
  void wait(Pending& pending, const char* what);

  // "dist: rank 1 of 2: <what> failed: <why>" (used for every error raised here).
  std::string where(const std::string& what) const;

 private:
  struct Impl;
  Comm(const WorldInfo& world, std::unique_ptr<Impl> impl, std::string backend, std::chrono::milliseconds timeout);
  WorldInfo world_;
  std::unique_ptr<Impl> impl_;
  std::string backend_;
  std::chrono::milliseconds timeout_;
};

// Averages gradients over ranks in buckets of about bucket_bytes, like DistributedDataParallel's
// reducer. With overlap, a hook on every parameter copies its gradient into its bucket as backward
// produces it, and a bucket's all-reduce starts as soon as all its gradients are in -- buckets start
// strictly in order (last layers first, the order backward produces them) so that every rank issues
// the same collectives in the same order. finish() (after backward) starts the rest, waits, and
// writes the averages into the .grad fields. Without overlap, finish() does all of it.
class GradReducer {
 public:
  GradReducer(std::shared_ptr<Comm> comm, std::vector<torch::Tensor> params, int64_t bucket_bytes, bool overlap);
  ~GradReducer();
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  void finish();
  // Seconds finish() spent (waiting for and copying out the all-reduces) in the last step, and the
  // seconds from the first bucket's launch to the end of finish().
  double last_wait_seconds() const { return last_wait_seconds_; }
  double last_comm_seconds() const { return last_comm_seconds_; }
  size_t buckets() const { return buckets_.size(); }

 private:
  struct Bucket {
    std::vector<size_t> members;  // indices into params_
    std::vector<int64_t> offsets;
    torch::Tensor flat;
    size_t pending = 0;
    std::vector<bool> filled;
    std::shared_ptr<Comm::Pending> work;
  };
  void on_grad(size_t param, const torch::Tensor& grad);
  void launch_ready();  // with mutex_ held

  std::shared_ptr<Comm> comm_;
  std::vector<torch::Tensor> params_;
  std::vector<std::pair<size_t, size_t>> where_;  // param -> (bucket, slot)
  std::vector<unsigned> hooks_;
  std::vector<Bucket> buckets_;
  size_t next_launch_ = 0;
  bool overlap_;
  std::mutex mutex_;
  std::chrono::steady_clock::time_point first_launch_;
  bool launched_any_ = false;
  double last_wait_seconds_ = 0, last_comm_seconds_ = 0;
};

// Floating-point buffers (BatchNorm running statistics, activation-quantizer ranges) averaged over
// ranks, so that every rank holds the same model.
void average_buffers(Comm& comm, torch::nn::Module& model);

// Rank 0's parameters and buffers on every rank.
void broadcast_module(Comm& comm, torch::nn::Module& model);

// A 64-bit FNV-1a hash of the bytes of every parameter and buffer (in state-dict order).
int64_t module_checksum(torch::nn::Module& model);

}  // namespace prom::dist
