// What short requantization multipliers (quant.requant: short | power_of_two) do to the values, as
// gains for the simulated forward. The integer model multiplies a conv's accumulator by M'_c, the
// nearest multiplier of `bits` significant bits to the exact M_c = a_c * s_in * s_w,c / s_out, so its
// output is r_c = M'_c / M_c times what the float modules compute (up to 1.33x or 0.67x for powers of
// two); a residual add rescales its inputs by shortened integer ratios likewise. Without these gains
// QAT trains a different network than the one exported (power_of_two: 20% top-1 on Fashion-MNIST
// where fixed_point32 gives 92%); with them the simulated forward follows the integer model, and
// the frozen epochs (train_forward: exact_when_frozen) train on its exact values.
#pragma once
#include "model/layer.h"

namespace prom::quant {

// Sets every activation quantizer's gains (ActivationQuantImpl::set_gains) from the model's current
// scales, BatchNorm running statistics and weights: a conv's output quantizer gets r_c per channel;
// an add's output quantizer gets the skip input's gain g_a, its branch quantizer g_b / g_a, so that
// the add computes g_a * skip + g_b * branch as the integer add does. `multiplier_bits` >= 31: all
// gains cleared. Layers whose quantizers have not seen data yet are left without gains.
void set_requant_gains(model::ClassifierModel& model, int multiplier_bits);

// r = M' / M for one multiplier M > 0 shortened to `bits` significant bits (arith::shorten_multiplier
// on its mantissa: the rounding lowering uses); 1 for M <= 0 or bits >= 31.
double shortened_multiplier_gain(double m, int bits);

}  // namespace prom::quant
