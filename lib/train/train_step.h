// One training iteration on one batch: forward (with the distillation teacher when there is one),
// the loss, backward, the gradient all-reduce of data-parallel runs, clipping and the optimizer
// update. With train.amp the forward runs under autocast (the losses are computed in fp32 from its
// logits), and fp16 scales the loss (grad_scaler.h). Nothing here reads a device value back to the
// host, except fp16's one read per step to decide whether its gradients allow the update.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "config/config.h"
#include "data/batch_source.h"
#include "core/autocast.h"
#include "train/checkpoint.h"
#include "train/grad_scaler.h"
#include "train/optimizer.h"
#include "train/train_models.h"

namespace prom::dist {
class Comm;
class GradReducer;
}  // namespace prom::dist

namespace prom::train {

struct StepForward {
  torch::Tensor logits;  // [N, classes]
  torch::Tensor loss;    // 0-d float32, what backward differentiates
  int64_t samples = 0;   // N
  torch::Tensor labels;  // [N] on the device
};

class TrainStep {
 public:
  // `reducer` (data-parallel) and `comm` may be null.
  TrainStep(const config::Config& config, TrainModels& models, Optimizer& optimizer, const torch::Device& device,
            dist::GradReducer* reducer, dist::Comm* comm);

  // Forward and loss for the step that follows `iteration` completed steps.
  StepForward forward(const data::Batch& batch, int64_t iteration);
  // Backward, gradient all-reduce, clipping, the update at learning rate `lr`, buffer averaging.
  // fp16: a step with non-finite gradients is skipped (and the loss scale lowered).
  void update(const StepForward& step, double lr);

  // fp16 only: the loss scaler's state to and from the checkpointed progress.
  void save_scaler(TrainProgress& progress) const;
  void load_scaler(const TrainProgress& progress);
  const GradScaler* scaler() const { return scaler_.get(); }

 private:
  torch::Tensor to_device_images(const torch::Tensor& images) const;

  const config::TrainConfig& train_;
  bool channels_last_;
  TrainModels& models_;
  Optimizer& optimizer_;
  torch::Device device_;
  dist::GradReducer* reducer_;
  dist::Comm* comm_;
  std::vector<torch::Tensor> params_;  // what the optimizer updates (for clipping)
  Amp amp_;
  std::unique_ptr<GradScaler> scaler_;  // fp16 only
};

// torch.nn.utils.clip_grad_norm_ (2-norm, the same arithmetic as LibTorch's) without its final
// read of the total norm.
void clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm);

}  // namespace prom::train
