#include "infer/compare.h"

namespace prom::infer {

Comparison compare_with_fake_quant(model::ClassifierModel& fake_quant, IntegerEngine& engine,
                                   data::BatchSource& source, bool channels_last) {
  torch::NoGradGuard no_grad;
  fake_quant.eval();
  Comparison c;
  int64_t agree = 0, fq_correct = 0, int_correct = 0;
  const torch::Tensor step = engine.model().ops.back().output_scale.unsqueeze(0);
  source.start_epoch(0);
  while (auto batch = source.next()) {
    torch::Tensor x = batch->images;
    torch::Tensor fq = fake_quant.forward(channels_last ? x.contiguous(torch::MemoryFormat::ChannelsLast) : x)
                           .to(torch::kCPU, torch::kFloat32);
    torch::Tensor ours = engine.logits(x.contiguous());
    torch::Tensor diff = (fq - ours).abs();
    c.max_logit_diff = std::max(c.max_logit_diff, diff.max().item<double>());
    c.max_logit_diff_steps = std::max(c.max_logit_diff_steps, (diff / step).max().item<double>());
    torch::Tensor p_fq = fq.argmax(1), p_int = ours.argmax(1), y = batch->labels.to(torch::kCPU);
    agree += p_fq.eq(p_int).sum().item<int64_t>();
    fq_correct += p_fq.eq(y).sum().item<int64_t>();
    int_correct += p_int.eq(y).sum().item<int64_t>();
    c.samples += y.size(0);
  }
  if (c.samples > 0) {
    c.top1_agreement = 100.0 * agree / c.samples;
    c.fakequant_top1 = 100.0 * fq_correct / c.samples;
    c.integer_top1 = 100.0 * int_correct / c.samples;
  }
  return c;
}

}  // namespace prom::infer
