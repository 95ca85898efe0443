#include "train/train_step.h"

#include <limits>

#include "distributed/comm.h"
#include "train/loss.h"

namespace prom::train {

TrainStep::TrainStep(const config::Config& config, TrainModels& models, Optimizer& optimizer,
                     const torch::Device& device, dist::GradReducer* reducer, dist::Comm* comm)
    : train_(config.train),
      channels_last_(config.model.channels_last),
      models_(models),
      optimizer_(optimizer),
      device_(device),
      reducer_(reducer),
      comm_(comm),
      amp_(parse_amp(config.train.amp)) {
  for (const auto& p : optimizer_.params()) params_.push_back(p.param);
  if (amp_ == Amp::kFp16) scaler_ = std::make_unique<GradScaler>();
}

void clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> grads, norms;
  for (const auto& p : params)
    if (p.grad().defined()) {
      grads.push_back(p.grad());
      norms.push_back(p.grad().norm(2.0));
    }
  if (grads.empty()) return;
  torch::Tensor total = norms.size() == 1 ? norms[0] : torch::stack(norms).norm(2.0);
  torch::Tensor coef = torch::clamp(max_norm / (total + 1e-6), c10::nullopt, 1.0);
  for (auto& g : grads) g.mul_(coef);
}

torch::Tensor TrainStep::to_device_images(const torch::Tensor& images) const {
  torch::Tensor x = images.to(device_, /*non_blocking=*/true);
  if (channels_last_) x = x.contiguous(torch::MemoryFormat::ChannelsLast);
  return x;
}

StepForward TrainStep::forward(const data::Batch& batch, int64_t iteration) {
  StepForward s;
  torch::Tensor x = to_device_images(batch.images);
  s.labels = batch.labels.to(device_, /*non_blocking=*/true);
  s.samples = s.labels.size(0);
  torch::Tensor teacher_logits;
  {
    AutocastScope autocast(amp_, device_);
    s.logits = models_.net->forward(x);
    if (models_.teacher) {
      torch::NoGradGuard no_grad;
      teacher_logits = models_.teacher->forward(x);
    }
  }
  if (amp_ != Amp::kOff) {  // the losses in fp32, as torch's AMP recipes compute them
    s.logits = s.logits.to(torch::kFloat32);
    if (teacher_logits.defined()) teacher_logits = teacher_logits.to(torch::kFloat32);
  }
  s.loss = classification_loss(s.logits, s.labels, train_.label_smoothing);
  if (models_.teacher) {
    const auto& d = train_.distill;
    s.loss = (1.0 - d.alpha) * s.loss + d.alpha * distillation_loss(s.logits, teacher_logits, d.temperature);
  }
  if (train_.test_hooks.nan_loss_at_iteration == iteration + 1)
    s.loss = s.loss * std::numeric_limits<double>::quiet_NaN();
  return s;
}

void TrainStep::update(const StepForward& step, double lr) {
  optimizer_.set_lr(lr);
  optimizer_.zero_grad();
  (scaler_ ? scaler_->scale_loss(step.loss) : step.loss).backward();
  if (reducer_ != nullptr) reducer_->finish();  // the gradients averaged over ranks
  // After the all-reduce every rank holds the same gradients, so every rank decides alike.
  const bool finite = !scaler_ || scaler_->unscale(params_);
  if (finite) {
    if (train_.grad_clip_norm > 0) clip_grad_norm(params_, train_.grad_clip_norm);
    optimizer_.step();
  }
  if (scaler_) scaler_->update(finite);
  if (comm_ != nullptr) dist::average_buffers(*comm_, *models_.net);  // BatchNorm statistics, quantizer ranges
}

void TrainStep::save_scaler(TrainProgress& progress) const {
  if (!scaler_) return;
  progress.loss_scale = scaler_->scale();
  progress.loss_scale_growth = scaler_->growth_tracker();
}

void TrainStep::load_scaler(const TrainProgress& progress) {
  if (scaler_ && progress.loss_scale > 0) scaler_->load(progress.loss_scale, progress.loss_scale_growth);
}

}  // namespace prom::train
