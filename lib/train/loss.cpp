#include "train/loss.h"

#include <algorithm>

#include "core/host_read.h"

namespace prom::train {

namespace F = torch::nn::functional;

torch::Tensor classification_loss(const torch::Tensor& logits, const torch::Tensor& labels, double label_smoothing) {
  return F::cross_entropy(logits, labels, F::CrossEntropyFuncOptions().label_smoothing(label_smoothing));
}

torch::Tensor distillation_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                                double temperature) {
  torch::Tensor log_p_student = torch::log_softmax(student_logits / temperature, 1);
  torch::Tensor log_p_teacher = torch::log_softmax(teacher_logits / temperature, 1);
  // sum_c p_t (log p_t - log p_s), averaged over the batch ("batchmean").
  torch::Tensor kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(1).mean();
  return kl * (temperature * temperature);
}

torch::Tensor correct_counts(const torch::Tensor& logits, const torch::Tensor& labels) {
  torch::NoGradGuard no_grad;
  const int64_t k = std::min<int64_t>(5, logits.size(1));
  torch::Tensor top = std::get<1>(logits.topk(k, 1));                 // [N, k]
  torch::Tensor hit = top.eq(labels.view({-1, 1}).to(top.device()));  // [N, k]
  return torch::stack({hit.select(1, 0).sum(), hit.any(1).sum()});
}

Correct count_correct(const torch::Tensor& logits, const torch::Tensor& labels) {
  torch::Tensor counts = host_copy(correct_counts(logits, labels)).contiguous();
  const int64_t* c = counts.data_ptr<int64_t>();
  return {c[0], c[1]};
}

}  // namespace prom::train
