// Checkpoints: one safetensors file each. Tensors: the model under its torchvision state-dict names
// (so any checkpoint is also a weights file), optimizer buffers as "optim/<param>/<buffer>", the EMA
// model as "ema/<param>", RNG states as "rng/cpu" and "rng/cuda". __metadata__ holds text:
//   format    "prom-checkpoint/1"
//   prom      the prom version that wrote it
//   state     JSON: epoch, position in the epoch, iteration, optimizer steps, best top-1, the
//             epoch's running sums (so a mid-epoch resume reports the same epoch metrics), and
//             with fp16 training the loss scaler's state (loss_scale, loss_scale_growth)
//   config    the resolved config (YAML)
//   classes   JSON array of class names (index = label)
// Writes are atomic (temp file, fsync, rename).
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

namespace prom::train {

// Where training stands. epoch counts completed epochs; batches_done the batches of the epoch in
// progress already trained on (0 at an epoch boundary).
struct TrainProgress {
  int64_t epoch = 0;
  int64_t batches_done = 0;
  int64_t iteration = 0;        // optimizer steps so far
  int64_t optimizer_steps = 0;
  double best_top1 = -1;        // best eval top-1 so far (-1: none yet)
  int64_t best_epoch = 0;
  // Running sums of the epoch in progress.
  double loss_sum = 0;
  int64_t samples = 0, correct = 0;
  // train.amp fp16: the dynamic loss scale and its count of good steps (0: no loss scaling).
  double loss_scale = 0;
  int64_t loss_scale_growth = 0;
};

struct Checkpoint {
  std::map<std::string, torch::Tensor> model;  // torchvision names
  std::map<std::string, torch::Tensor> optim;  // "optim/..."
  std::map<std::string, torch::Tensor> ema;    // names without the "ema/" prefix
  torch::Tensor rng_cpu, rng_cuda;             // undefined when absent
  TrainProgress progress;
  std::string config_yaml;
  std::vector<std::string> classes;
  std::string prom_version;
};

void save_checkpoint(const std::string& path, const Checkpoint& checkpoint);
// Throws prom::Error naming the file for anything that is not a prom checkpoint.
Checkpoint load_checkpoint(const std::string& path);

// The model tensors of a checkpoint or of a plain weights file (what model.init and
// train.distill.teacher accept), and its class list when it has one (empty otherwise).
std::map<std::string, torch::Tensor> load_model_tensors(const std::string& path,
                                                        std::vector<std::string>* classes = nullptr);

// Labels are indices into the class list, so a model only fits data with the same classes in the
// same order. Throws prom::Error "origin: class list does not match the data (...)" naming the
// first difference; an empty `expected` (a weights file without a class list) always passes.
void check_classes(const std::vector<std::string>& expected, const std::vector<std::string>& actual,
                   const std::string& origin);

// The RNG states training draws from: the CPU generator, and the CUDA one of `device` when it is a
// CUDA device.
void capture_rng(Checkpoint& checkpoint, const torch::Device& device);
// A state that is not one (a damaged file) is a prom::Error naming `origin`.
void restore_rng(const Checkpoint& checkpoint, const torch::Device& device, const std::string& origin = "");

}  // namespace prom::train
