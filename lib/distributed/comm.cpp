#include "distributed/comm.h"

#include <torch/csrc/distributed/c10d/Backend.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/version.h>

#include <cstdlib>
#include <utility>

#include "core/error.h"
#include "distributed/backend.h"

// The process groups are compiled where the build found their headers (lib/CMakeLists.txt):
// PROM_WITH_GLOO (defines USE_C10D_GLOO) and PROM_WITH_NCCL (USE_C10D_NCCL, CUDA builds only).
#ifdef PROM_WITH_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef PROM_WITH_NCCL
#include <c10/cuda/CUDAFunctions.h>
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace prom::dist {
namespace {

// LibTorch 2.x split the process group into ProcessGroup (front) and Backend (Gloo, NCCL); the
// collectives we call have the same signatures on both.
#if TORCH_VERSION_MAJOR >= 2
using Group = c10d::Backend;
#else
using Group = c10d::ProcessGroup;
#endif

using Clock = std::chrono::steady_clock;

// The first line of an exception's text (c10::Error appends a backtrace).
std::string one_line(const std::exception& e) {
  std::string s;
  if (const auto* c = dynamic_cast<const c10::Error*>(&e)) s = c->what_without_backtrace();
  else s = e.what();
  const size_t nl = s.find('\n');
  if (nl != std::string::npos) s = s.substr(0, nl);
  return s;
}

[[maybe_unused]] bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

}  // namespace

struct Comm::Pending {
  c10::intrusive_ptr<c10d::Work> work;
  torch::Tensor tensor;   // what the collective works on
  torch::Tensor target;   // where the result goes when it differs (a CUDA tensor reduced on CPU by Gloo)
};

struct Comm::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<Group> group;
  torch::Device device{torch::kCPU};  // where the collectives want their tensors
};

Comm::Comm(const WorldInfo& world, std::unique_ptr<Impl> impl, std::string backend, std::chrono::milliseconds timeout)
    : world_(world), impl_(std::move(impl)), backend_(std::move(backend)), timeout_(timeout) {}

Comm::~Comm() {
  if (impl_) impl_->group.reset();  // the group before the store it talks through
}

std::string Comm::where(const std::string& what) const {
  return "dist: rank " + std::to_string(world_.rank) + " of " + std::to_string(world_.world_size) + ": " + what;
}

std::shared_ptr<Comm> Comm::connect(const WorldInfo& world, const config::DistConfig& config,
                                    const torch::Device& device) {
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(config.timeout_s * 1000.0));
  // Before the rendezvous: a job that cannot run as asked stops at once, on every rank.
  const std::string backend = choose_backend(config.backend, device.is_cuda(), world.world_size, compiled_backends());
  auto impl = std::make_unique<Impl>();
  WorldInfo w = world;
  auto fail = [&](const std::string& what) {
    return Error("dist: rank " + std::to_string(w.rank) + " of " + std::to_string(w.world_size) + ": " + what);
  };
  try {
    c10d::TCPStoreOptions so;
    so.port = static_cast<std::uint16_t>(w.master_port);
    so.isServer = w.rank == 0;
    so.numWorkers = static_cast<std::size_t>(w.world_size);
    so.waitWorkers = true;
    so.timeout = timeout;
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
    // LibTorch >= 2.4 asks for the libuv store by default, which Debian 13's LibTorch 2.6 lacks ("use_libuv
    // was requested but PyTorch was build without libuv support"); the classic store works in every build.
    so.useLibUV = false;
#endif
    impl->store = c10::make_intrusive<c10d::TCPStore>(w.master_addr, so);
  } catch (const std::exception& e) {
    throw fail("rendezvous at " + w.master_addr + ":" + std::to_string(w.master_port) + " failed (timeout " +
               config::format_number(config.timeout_s) + " s, dist.timeout_s): " + one_line(e));
  }
  try {
    if (backend == "nccl") {
#ifdef PROM_WITH_NCCL
      // Without asynchronous error handling a NCCL collective whose peer died blocks forever.
      setenv("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1", 0);
      setenv("NCCL_ASYNC_ERROR_HANDLING", "1", 0);
      c10::cuda::set_device(device.index());  // NCCL's communicators and streams on this rank's GPU
      auto o = c10d::ProcessGroupNCCL::Options::create();
      o->timeout = timeout;
      impl->group = c10::make_intrusive<c10d::ProcessGroupNCCL>(impl->store, w.rank, w.world_size, o);
      impl->device = device;
#else
      throw Error("dist: no NCCL in this build");  // choose_backend() ruled this out
#endif
    } else {
#ifdef PROM_WITH_GLOO
      auto o = c10d::ProcessGroupGloo::Options::create(timeout);
      if (const char* ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname != nullptr && *ifname != '\0')
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
      else if (is_loopback(w.master_addr))
        o->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      else
        o->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      impl->group = c10::make_intrusive<c10d::ProcessGroupGloo>(impl->store, w.rank, w.world_size, o);
      impl->device = torch::Device(torch::kCPU);
#else
      throw Error("dist: no Gloo in this build");  // choose_backend() ruled this out
#endif
    }
  } catch (const ConfigError&) {
    throw;
  } catch (const std::exception& e) {
    throw fail("cannot create the " + backend + " process group: " + one_line(e));
  }
  return std::shared_ptr<Comm>(new Comm(w, std::move(impl), backend, timeout));
}

std::shared_ptr<Comm::Pending> Comm::allreduce_async(torch::Tensor& tensor) {
  auto p = std::make_shared<Pending>();
  p->target = tensor;
  p->tensor = tensor.device() == impl_->device && tensor.is_contiguous() ? tensor : tensor.to(impl_->device).contiguous();
  try {
    std::vector<at::Tensor> v{p->tensor};
    p->work = impl_->group->allreduce(v);
  } catch (const std::exception& e) {
    throw Error(where("all-reduce failed: " + one_line(e)));
  }
  return p;
}

void Comm::wait(Pending& p, const char* what) {
  const auto start = Clock::now();
  bool done = false;
  try {
    done = p.work->wait(timeout_);
  } catch (const std::exception& e) {
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    char buf[64];
    std::snprintf(buf, sizeof buf, " after %.1f s", s);
    throw Error(where(std::string(what) + " failed" + buf + " (a peer rank died, or hung past dist.timeout_s " +
                      config::format_number(timeout_.count() / 1000.0) + " s): " + one_line(e)));
  }
  if (!done)
    throw Error(where(std::string(what) + " timed out after dist.timeout_s " +
                      config::format_number(timeout_.count() / 1000.0) + " s (a peer rank hung)"));
  if (!p.target.is_same(p.tensor)) p.target.copy_(p.tensor);
}

void Comm::allreduce_sum(torch::Tensor& tensor) {
  auto p = allreduce_async(tensor);
  wait(*p, "all-reduce");
}

namespace {

// Tensors grouped by dtype: one flat buffer per group, and a way back.
template <class Op>
void coalesced(std::vector<torch::Tensor>& tensors, const torch::Device& device, Op op) {
  torch::NoGradGuard no_grad;
  std::vector<bool> done(tensors.size(), false);
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (done[i]) continue;
    std::vector<size_t> group;
    for (size_t j = i; j < tensors.size(); ++j)
      if (!done[j] && tensors[j].scalar_type() == tensors[i].scalar_type()) {
        group.push_back(j);
        done[j] = true;
      }
    std::vector<torch::Tensor> flats;
    for (size_t j : group) flats.push_back(tensors[j].detach().reshape(-1).to(device));
    torch::Tensor flat = torch::cat(flats);
    op(flat);
    int64_t offset = 0;
    for (size_t j : group) {
      const int64_t n = tensors[j].numel();
      tensors[j].detach().copy_(flat.narrow(0, offset, n).view(tensors[j].sizes()));
      offset += n;
    }
  }
}

}  // namespace

void Comm::allreduce_sum(std::vector<torch::Tensor>& tensors) {
  coalesced(tensors, impl_->device, [&](torch::Tensor& flat) { allreduce_sum(flat); });
}

void Comm::broadcast(std::vector<torch::Tensor>& tensors, int root) {
  coalesced(tensors, impl_->device, [&](torch::Tensor& flat) {
    Pending p;
    p.tensor = p.target = flat;
    try {
      std::vector<at::Tensor> v{flat};
      c10d::BroadcastOptions o;
      o.rootRank = root;
      p.work = impl_->group->broadcast(v, o);
    } catch (const std::exception& e) {
      throw Error(where("broadcast failed: " + one_line(e)));
    }
    wait(p, "broadcast");
  });
}

std::vector<double> Comm::sum(const std::vector<double>& values) {
  torch::Tensor t = torch::tensor(values, torch::dtype(torch::kFloat64)).to(impl_->device);
  allreduce_sum(t);
  t = t.cpu();
  return std::vector<double>(t.data_ptr<double>(), t.data_ptr<double>() + t.numel());
}

std::vector<int64_t> Comm::all_gather(int64_t value) {
  torch::Tensor t = torch::zeros({world_.world_size}, torch::kInt64);
  t[world_.rank] = value;
  t = t.to(impl_->device);
  allreduce_sum(t);
  t = t.cpu();
  return std::vector<int64_t>(t.data_ptr<int64_t>(), t.data_ptr<int64_t>() + t.numel());
}

// ---- GradReducer ----

GradReducer::GradReducer(std::shared_ptr<Comm> comm, std::vector<torch::Tensor> params, int64_t bucket_bytes,
                         bool overlap)
    : comm_(std::move(comm)), overlap_(overlap) {
  for (auto& p : params)
    if (p.requires_grad()) params_.push_back(p);
  where_.resize(params_.size());
  // Backward produces the last layers' gradients first: buckets are filled from the end.
  int64_t bytes = 0;
  for (size_t k = params_.size(); k-- > 0;) {
    const auto& p = params_[k];
    if (buckets_.empty() || bytes >= bucket_bytes ||
        buckets_.back().flat.scalar_type() != p.scalar_type()) {
      buckets_.emplace_back();
      buckets_.back().flat = torch::empty({0}, p.options().device(torch::kCPU));
      bytes = 0;
    }
    Bucket& b = buckets_.back();
    where_[k] = {buckets_.size() - 1, b.members.size()};
    b.offsets.push_back(b.flat.numel());
    b.members.push_back(k);
    b.flat = torch::empty({b.flat.numel() + p.numel()}, b.flat.options());
    bytes += p.numel() * static_cast<int64_t>(p.element_size());
  }
  // The flat buffers live where the collectives run (CPU for Gloo, the GPU for NCCL).
  const torch::Device device = params_.empty() ? torch::Device(torch::kCPU) : params_.front().device();
  for (auto& b : buckets_) {
    torch::Device d = comm_->backend() == "nccl" ? device : torch::Device(torch::kCPU);
    b.flat = torch::zeros({b.flat.numel()}, b.flat.options().device(d));
    b.pending = b.members.size();
    b.filled.assign(b.members.size(), false);
  }
  if (overlap_)
    for (size_t k = 0; k < params_.size(); ++k)
      hooks_.push_back(params_[k].register_hook([this, k](torch::Tensor grad) { on_grad(k, grad); }));
}

GradReducer::~GradReducer() {
  // The hooks hold `this`.
  for (size_t k = 0; k < hooks_.size(); ++k) {
    try {
      params_[k].remove_hook(hooks_[k]);
    } catch (...) {
    }
  }
}

void GradReducer::on_grad(size_t k, const torch::Tensor& grad) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto [bi, slot] = where_[k];
  Bucket& b = buckets_[bi];
  if (b.work) return;  // already on its way (a second gradient for the same step: finish() reports it)
  torch::NoGradGuard no_grad;
  torch::Tensor dst = b.flat.narrow(0, b.offsets[slot], params_[k].numel()).view(params_[k].sizes());
  if (b.filled[slot]) {
    dst.add_(grad);
  } else {
    dst.copy_(grad);
    b.filled[slot] = true;
    --b.pending;
  }
  if (b.pending == 0) launch_ready();
}

void GradReducer::launch_ready() {
  while (next_launch_ < buckets_.size() && buckets_[next_launch_].pending == 0) {
    if (!launched_any_) {
      first_launch_ = std::chrono::steady_clock::now();
      launched_any_ = true;
    }
    buckets_[next_launch_].work = comm_->allreduce_async(buckets_[next_launch_].flat);
    ++next_launch_;
  }
}

void GradReducer::finish() {
  const auto start = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mutex_);
  torch::NoGradGuard no_grad;
  // Whatever backward did not deliver through the hooks: the .grad fields, or zeros for parameters
  // this rank did not use (their average still comes from the ranks that did).
  for (size_t bi = next_launch_; bi < buckets_.size(); ++bi) {
    Bucket& b = buckets_[bi];
    for (size_t slot = 0; slot < b.members.size(); ++slot) {
      if (b.filled[slot]) continue;
      const auto& p = params_[b.members[slot]];
      torch::Tensor dst = b.flat.narrow(0, b.offsets[slot], p.numel()).view(p.sizes());
      if (p.grad().defined()) dst.copy_(p.grad());
      else dst.zero_();
      b.filled[slot] = true;
    }
    b.pending = 0;
  }
  launch_ready();
  const double inv = 1.0 / comm_->world_size();
  for (auto& b : buckets_) {
    comm_->wait(*b.work, "gradient all-reduce");
    b.work.reset();
    b.flat.mul_(inv);
    for (size_t slot = 0; slot < b.members.size(); ++slot) {
      auto& p = params_[b.members[slot]];
      torch::Tensor avg = b.flat.narrow(0, b.offsets[slot], p.numel()).view(p.sizes());
      if (p.grad().defined()) p.mutable_grad().copy_(avg);
      else p.mutable_grad() = avg.to(p.device(), /*non_blocking=*/false, /*copy=*/true);
    }
    b.pending = b.members.size();
    b.filled.assign(b.members.size(), false);
  }
  next_launch_ = 0;
  const auto end = std::chrono::steady_clock::now();
  last_wait_seconds_ = std::chrono::duration<double>(end - start).count();
  last_comm_seconds_ = launched_any_ ? std::chrono::duration<double>(end - first_launch_).count() : 0.0;
  launched_any_ = false;
}

// ---- module helpers ----

void average_buffers(Comm& comm, torch::nn::Module& model) {
  std::vector<torch::Tensor> floats;
  for (auto& b : model.buffers())
    if (b.defined() && b.is_floating_point()) floats.push_back(b);
  if (floats.empty()) return;
  comm.allreduce_sum(floats);
  torch::NoGradGuard no_grad;
  for (auto& b : floats) b.div_(comm.world_size());
}

void broadcast_module(Comm& comm, torch::nn::Module& model) {
  std::vector<torch::Tensor> all;
  for (auto& p : model.parameters()) all.push_back(p);
  for (auto& b : model.buffers())
    if (b.defined()) all.push_back(b);
  comm.broadcast(all, 0);
}

int64_t module_checksum(torch::nn::Module& model) {
  uint64_t h = 0xcbf29ce484222325ULL;
  auto mix = [&](const torch::Tensor& t) {
    torch::Tensor c = t.detach().cpu().contiguous();
    const auto* p = static_cast<const unsigned char*>(c.data_ptr());
    const size_t n = static_cast<size_t>(c.numel()) * c.element_size();
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ULL;
  };
  for (const auto& item : model.named_parameters()) mix(item.value());
  for (const auto& item : model.named_buffers()) mix(item.value());
  return static_cast<int64_t>(h);
}

}  // namespace prom::dist
