// The training objectives and the accuracy counts, as free functions so tests can check them
// against hand computations.
#pragma once
#include <torch/torch.h>

namespace prom::train {

// Cross-entropy with label smoothing eps: the target is (1 - eps) on the label plus eps / C on
// every class (PyTorch's definition). Mean over the batch.
torch::Tensor classification_loss(const torch::Tensor& logits, const torch::Tensor& labels, double label_smoothing);

// Knowledge distillation (Hinton et al. 2015): KL(softmax(teacher / T) || softmax(student / T)) * T^2,
// mean over the batch. The T^2 keeps its gradient scale independent of T.
torch::Tensor distillation_loss(const torch::Tensor& student_logits, const torch::Tensor& teacher_logits,
                                double temperature);

// How many rows have the label among the top-1 and the top-5 logits (top-k clipped to the classes).
struct Correct {
  int64_t top1 = 0, top5 = 0;
};
Correct count_correct(const torch::Tensor& logits, const torch::Tensor& labels);
// The same counts as an int64 [2] tensor (top-1, top-5) on the logits' device: no host read.
torch::Tensor correct_counts(const torch::Tensor& logits, const torch::Tensor& labels);

}  // namespace prom::train
