// Runs the fake-quant model and the integer engine on the same batches: how far apart they are.
#pragma once
#include "data/batch_source.h"
#include "infer/engine.h"

namespace prom::infer {

struct Comparison {
  int64_t samples = 0;
  double top1_agreement = 0;     // percent of images where both predict the same class
  double fakequant_top1 = 0, integer_top1 = 0;  // percent
  double max_logit_diff = 0;     // largest |difference| of real-valued logits
  double max_logit_diff_steps = 0;  // the same in units of the classifier's output step
};

Comparison compare_with_fake_quant(model::ClassifierModel& fake_quant, IntegerEngine& engine,
                                   data::BatchSource& source, bool channels_last);

}  // namespace prom::infer
