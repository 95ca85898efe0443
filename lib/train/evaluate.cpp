#include "train/evaluate.h"

#include <chrono>

#include "core/host_read.h"
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

// The sums stay on the device, one read at the end (a read per batch would stall a GPU).
EvalResult evaluate(const std::function<torch::Tensor(const torch::Tensor& images)>& logits_of,
                    data::BatchSource& source, int64_t num_classes) {
  auto start = std::chrono::steady_clock::now();
  torch::NoGradGuard no_grad;
  EvalResult r;
  torch::Tensor loss_sum, counts, class_counts;  // float64 [], int64 [2] (top-1, top-5), int64 [2, classes]
  source.start_epoch(0);
  while (auto batch = source.next()) {
    torch::Tensor logits = logits_of(batch->images);
    torch::Tensor y = batch->labels.to(logits.device(), true);
    const int64_t n = y.size(0);
    torch::Tensor batch_loss = classification_loss(logits, y, 0.0).to(torch::kFloat64) * static_cast<double>(n);
    torch::Tensor batch_counts = correct_counts(logits, y);
    // Per-class top-1 (labels outside [0, classes) are not counted), with index_add_: bincount and
    // masked_select would read a size back from the device.
    torch::Tensor valid = y.ge(0).logical_and(y.lt(num_classes));
    torch::Tensor hit = logits.argmax(1).eq(y).logical_and(valid);
    torch::Tensor index = y.clamp(0, num_classes - 1);
    torch::Tensor per_class = torch::zeros({2, num_classes}, y.options().dtype(torch::kInt64));
    per_class.select(0, 0).index_add_(0, index, hit.to(torch::kInt64));
    per_class.select(0, 1).index_add_(0, index, valid.to(torch::kInt64));
    loss_sum = loss_sum.defined() ? loss_sum.add_(batch_loss) : batch_loss;
    counts = counts.defined() ? counts.add_(batch_counts) : batch_counts;
    class_counts = class_counts.defined() ? class_counts.add_(per_class) : per_class;
    r.samples += n;
  }
  r.class_correct.assign(num_classes, 0);
  r.class_total.assign(num_classes, 0);
  if (r.samples > 0) {
    torch::Tensor all = host_copy(torch::cat({loss_sum.reshape({1}), counts.to(torch::kFloat64),
                                              class_counts.reshape({-1}).to(torch::kFloat64)}));
    const double* v = all.data_ptr<double>();
    const double samples = static_cast<double>(r.samples);
    r.loss = v[0] / samples;
    r.top1 = 100.0 * v[1] / samples;
    r.top5 = 100.0 * v[2] / samples;
    for (int64_t c = 0; c < num_classes; ++c) {
      r.class_correct[c] = static_cast<int64_t>(v[3 + c]);
      r.class_total[c] = static_cast<int64_t>(v[3 + num_classes + c]);
    }
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace prom::train
