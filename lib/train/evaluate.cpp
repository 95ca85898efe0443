#include "train/evaluate.h"

#include <chrono>

#include "train/loss.h"

namespace prom::train {

EvalResult evaluate(model::ClassifierModel& model, data::BatchSource& source, const torch::Device& device,
                    bool channels_last, int64_t num_classes) {
  const bool was_training = model.is_training();
  model.eval();
  EvalResult r = evaluate(
      [&](const torch::Tensor& images) {
        torch::Tensor x = images.to(device, /*non_blocking=*/true);
        if (channels_last) x = x.contiguous(torch::MemoryFormat::ChannelsLast);
        return model.forward(x);
      },
      source, num_classes);
  if (was_training) model.train();
  return r;
}

EvalResult evaluate(const std::function<torch::Tensor(const torch::Tensor& images)>& logits_of,
                    data::BatchSource& source, int64_t num_classes) {
  auto start = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  EvalResult r;
  r.class_correct.assign(num_classes, 0);
  r.class_total.assign(num_classes, 0);
  double loss_sum = 0;
  int64_t top1 = 0, top5 = 0;
  source.start_epoch(0);
  while (auto batch = source.next()) {
    torch::Tensor logits = logits_of(batch->images);
    torch::Tensor y = batch->labels.to(logits.device(), true);
    const int64_t n = y.size(0);
    loss_sum += classification_loss(logits, y, 0.0).item<double>() * static_cast<double>(n);
    Correct c = count_correct(logits, y);
    top1 += c.top1;
    top5 += c.top5;
    r.samples += n;
    torch::Tensor pred = logits.argmax(1).to(torch::kCPU);
    torch::Tensor labels = batch->labels.to(torch::kCPU);
    auto p = pred.accessor<int64_t, 1>();
    auto l = labels.accessor<int64_t, 1>();
    for (int64_t i = 0; i < n; ++i) {
      if (l[i] < 0 || l[i] >= num_classes) continue;
      ++r.class_total[l[i]];
      r.class_correct[l[i]] += p[i] == l[i];
    }
  }
  if (r.samples > 0) {
    r.loss = loss_sum / static_cast<double>(r.samples);
    r.top1 = 100.0 * static_cast<double>(top1) / static_cast<double>(r.samples);
    r.top5 = 100.0 * static_cast<double>(top5) / static_cast<double>(r.samples);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace prom::train
