#include "infer/engine.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "infer/fixed_point.h"
#include "infer/kernels.h"

namespace prom::infer {

using exporter::IntOp;
using exporter::OpKind;

IntegerEngine::IntegerEngine(exporter::IntModel model, EngineOptions options)
    : model_(std::move(model)), avx2_(options.allow_avx2 && kernels::cpu_has_avx2()) {
  for (const auto& a : model_.activations) acts_.emplace_back(a.channels * a.height * a.width);
  plus_.resize(model_.ops.size());
  minus_.resize(model_.ops.size());
  plus_offsets_.resize(model_.ops.size());
  minus_offsets_.resize(model_.ops.size());
  size_t max_pixels = 0, max_padded = 0;
  for (size_t i = 0; i < model_.ops.size(); ++i) {
    const IntOp& op = model_.ops[i];
    counts_.push_back({op.name.empty() ? exporter::op_kind_name(op.kind) : op.name, op.kind, op.role, {}});
    const auto& in = model_.activations[op.input];
    const auto& out = model_.activations[op.output];
    max_pixels = std::max<size_t>(max_pixels, out.height * out.width);
    max_padded = std::max<size_t>(max_padded, (in.height + 2 * op.padding) * (in.width + 2 * op.padding));
    if (op.kind == OpKind::kConv && op.ternary) {
      if (op.kernel != 1 || op.groups != 1 || op.stride != 1 || op.padding != 0)
        throw Error("integer engine: ternary weights are supported on 1x1 stride-1 convolutions (layer " + op.name + ")");
      // Index lists per output channel: the kernel adds the inputs at `plus` and subtracts those at `minus`.
      torch::Tensor w = op.weight.reshape({op.out_channels, op.in_channels}).contiguous();
      const int8_t* wp = w.data_ptr<int8_t>();
      for (int64_t c = 0; c < op.out_channels; ++c) {
        plus_offsets_[i].push_back(static_cast<int64_t>(plus_[i].size()));
        minus_offsets_[i].push_back(static_cast<int64_t>(minus_[i].size()));
        for (int64_t k = 0; k < op.in_channels; ++k) {
          int8_t v = wp[c * op.in_channels + k];
          if (v == 1) plus_[i].push_back(static_cast<int32_t>(k));
          else if (v == -1) minus_[i].push_back(static_cast<int32_t>(k));
          else if (v != 0) throw Error("integer engine: ternary layer " + op.name + " has a code outside {-1, 0, 1}");
        }
      }
      plus_offsets_[i].push_back(static_cast<int64_t>(plus_[i].size()));
      minus_offsets_[i].push_back(static_cast<int64_t>(minus_[i].size()));
    }
  }
  acc_.resize(max_pixels);
  padded_.resize(max_padded);
}

void IntegerEngine::reset_counts() {
  for (auto& c : counts_) c.counts = {};
}

torch::Tensor IntegerEngine::quantize_input(const torch::Tensor& images) const {
  const auto& a = model_.activations[model_.input];
  int64_t lo = a.is_unsigned ? 0 : -128, hi = a.is_unsigned ? 255 : 127;
  // The same rounding as torch's fake quantization: x * (1/scale), to nearest even.
  float inv = 1.0f / static_cast<float>(a.scale);
  return torch::clamp(torch::round(images.to(torch::kFloat32).contiguous() * inv), lo, hi).to(torch::kInt16);
}

torch::Tensor IntegerEngine::run(const torch::Tensor& codes_in) {
  const auto& a = model_.activations[model_.input];
  torch::Tensor codes = codes_in.to(torch::kInt16).contiguous();
  if (codes.dim() != 4 || codes.size(1) != a.channels || codes.size(2) != a.height || codes.size(3) != a.width)
    throw Error("integer engine: input must be [N, " + std::to_string(a.channels) + ", " + std::to_string(a.height) +
                ", " + std::to_string(a.width) + "]");
  int64_t n = codes.size(0);
  const auto& out = model_.activations[model_.output];
  torch::Tensor logits = torch::empty({n, out.channels}, torch::kInt32);
  for (int64_t i = 0; i < n; ++i) run_image(codes[i].data_ptr<int16_t>(), logits[i].data_ptr<int32_t>());
  return logits;
}

torch::Tensor IntegerEngine::logits(const torch::Tensor& images) {
  torch::Tensor acc = run(quantize_input(images));
  const IntOp& head = model_.ops.back();
  return acc.to(torch::kFloat32) * head.output_scale.unsqueeze(0);
}

void IntegerEngine::run_image(const int16_t* input, int32_t* logits) {
  std::copy(input, input + acts_[model_.input].size(), acts_[model_.input].begin());
  for (size_t i = 0; i < model_.ops.size(); ++i) {
    const IntOp& op = model_.ops[i];
    switch (op.kind) {
      case OpKind::kConv: conv(op, i); break;
      case OpKind::kAdd: add(op, i); break;
      case OpKind::kAvgPool: avgpool(op, i); break;
      case OpKind::kLinear: linear(op, i, logits); break;
    }
  }
}

int32_t IntegerEngine::clamp_lo(const IntOp& op) const {
  const auto& out = model_.activations[op.output];
  return op.relu6 || out.is_unsigned ? 0 : -128;
}

int32_t IntegerEngine::clamp_hi(const IntOp& op) const {
  const auto& out = model_.activations[op.output];
  int32_t hi = out.is_unsigned ? 255 : 127;
  if (op.relu6) hi = std::min<int32_t>(hi, static_cast<int32_t>(std::lround(6.0 / out.scale)));
  return hi;
}

void IntegerEngine::conv(const IntOp& op, size_t index) {
  const auto& in = model_.activations[op.input];
  const auto& out = model_.activations[op.output];
  const int16_t* x = acts_[op.input].data();
  int16_t* y = acts_[op.output].data();
  const int64_t in_pixels = in.height * in.width, out_pixels = out.height * out.width;
  const int32_t* bias = op.bias.data_ptr<int32_t>();
  const int32_t* mult = op.multiplier.data_ptr<int32_t>();
  const int32_t* shift = op.shift.data_ptr<int32_t>();
  const int32_t lo = clamp_lo(op), hi = clamp_hi(op);
  OpCounts& counts = counts_[index].counts;
  int32_t* acc = acc_.data();

  if (op.ternary) {
    const auto& po = plus_offsets_[index];
    const auto& mo = minus_offsets_[index];
    for (int64_t c = 0; c < op.out_channels; ++c) {
      int64_t n_plus = po[c + 1] - po[c], n_minus = mo[c + 1] - mo[c];
      kernels::ternary_pointwise(x, in_pixels, plus_[index].data() + po[c], n_plus, minus_[index].data() + mo[c],
                                 n_minus, acc, avx2_);
      counts.ternary_adds += (n_plus + n_minus) * out_pixels;
      kernels::requantize(acc, out_pixels, static_cast<int32_t>(op.acc_shift), bias[c], mult[c], shift[c], lo, hi, y + c * out_pixels);
      counts.int32_adds += out_pixels;     // bias
      counts.requant_mults += out_pixels;  // fixed-point multiply
    }
    return;
  }

  const int8_t* w = op.weight.data_ptr<int8_t>();
  if (op.kernel == 1 && op.stride == 1 && op.padding == 0 && op.groups == 1) {
    for (int64_t c = 0; c < op.out_channels; ++c) {
      kernels::int8_pointwise(x, in_pixels, op.in_channels, w + c * op.in_channels, acc, avx2_);
      counts.int8_mults += op.in_channels * out_pixels;
      counts.int32_adds += op.in_channels * out_pixels + out_pixels;  // accumulate + bias
      kernels::requantize(acc, out_pixels, static_cast<int32_t>(op.acc_shift), bias[c], mult[c], shift[c], lo, hi, y + c * out_pixels);
      counts.requant_mults += out_pixels;
    }
    return;
  }

  // General (stem) and depthwise convolution over a zero-padded copy of each input plane: every
  // output takes the full k*k*(in/groups) multiply-accumulates, as the analytic count says.
  const int64_t k = op.kernel, s = op.stride, pad = op.padding;
  const int64_t ph = in.height + 2 * pad, pw = in.width + 2 * pad;
  const int64_t in_per_group = op.in_channels / op.groups, out_per_group = op.out_channels / op.groups;
  std::vector<int16_t>& padded = padded_;
  for (int64_t c = 0; c < op.out_channels; ++c) {
    int64_t g = c / out_per_group;
    std::fill(acc, acc + out_pixels, 0);
    for (int64_t ci = 0; ci < in_per_group; ++ci) {
      int64_t ic = g * in_per_group + ci;
      std::fill(padded.begin(), padded.begin() + ph * pw, 0);
      for (int64_t r = 0; r < in.height; ++r)
        std::copy(x + ic * in_pixels + r * in.width, x + ic * in_pixels + (r + 1) * in.width,
                  padded.begin() + (r + pad) * pw + pad);
      const int8_t* wk = w + (c * in_per_group + ci) * k * k;
      for (int64_t oy = 0; oy < out.height; ++oy)
        for (int64_t ox = 0; ox < out.width; ++ox) {
          const int16_t* base = padded.data() + oy * s * pw + ox * s;
          int32_t sum = 0;
          for (int64_t ky = 0; ky < k; ++ky)
            for (int64_t kx = 0; kx < k; ++kx) sum += static_cast<int32_t>(wk[ky * k + kx]) * base[ky * pw + kx];
          acc[oy * out.width + ox] += sum;
        }
    }
    counts.int8_mults += in_per_group * k * k * out_pixels;
    counts.int32_adds += in_per_group * k * k * out_pixels + out_pixels;
    kernels::requantize(acc, out_pixels, static_cast<int32_t>(op.acc_shift), bias[c], mult[c], shift[c], lo, hi, y + c * out_pixels);
    counts.requant_mults += out_pixels;
  }
}

void IntegerEngine::add(const IntOp& op, size_t index) {
  const auto& out = model_.activations[op.output];
  const int16_t* a = acts_[op.input].data();
  const int16_t* b = acts_[op.input2].data();
  int16_t* y = acts_[op.output].data();
  const int64_t n = static_cast<int64_t>(acts_[op.output].size());
  const int64_t lo = out.is_unsigned ? 0 : -128, hi = out.is_unsigned ? 255 : 127;
  const int64_t one = 1ll << op.add_shift, half = one >> 1, mask = one - 1;
  for (int64_t i = 0; i < n; ++i) {
    int64_t t = a[i] * op.add_mult_a + b[i] * op.add_mult_b;
    // Round half to even, as torch's fake quantization does (ties are common: scales share ratios).
    int64_t v = t >> op.add_shift, r = t & mask;
    if (r > half || (r == half && (v & 1))) ++v;
    y[i] = static_cast<int16_t>(std::min(hi, std::max(lo, v)));
  }
  OpCounts& counts = counts_[index].counts;
  counts.requant_mults += 2 * n;
  counts.int32_adds += n;
}

void IntegerEngine::avgpool(const IntOp& op, size_t index) {
  const auto& in = model_.activations[op.input];
  const int64_t pixels = in.height * in.width;
  const int16_t* x = acts_[op.input].data();
  int16_t* y = acts_[op.output].data();
  for (int64_t c = 0; c < in.channels; ++c) {
    int64_t sum = 0;
    for (int64_t p = 0; p < pixels; ++p) sum += x[c * pixels + p];
    y[c] = static_cast<int16_t>(divide_round_half_even(sum, pixels));
  }
  counts_[index].counts.int32_adds += in.channels * pixels;
  counts_[index].counts.requant_mults += in.channels;  // the division by H*W
}

void IntegerEngine::linear(const IntOp& op, size_t index, int32_t* logits) {
  const int16_t* x = acts_[op.input].data();
  const int8_t* w = op.weight.data_ptr<int8_t>();
  const int32_t* bias = op.bias.data_ptr<int32_t>();
  for (int64_t c = 0; c < op.out_channels; ++c) {
    int32_t sum = bias[c];
    for (int64_t i = 0; i < op.in_channels; ++i) sum += static_cast<int32_t>(w[c * op.in_channels + i]) * x[i];
    logits[c] = sum;
  }
  OpCounts& counts = counts_[index].counts;
  counts.int8_mults += op.in_channels * op.out_channels;
  counts.int32_adds += op.in_channels * op.out_channels + op.out_channels;
}

}  // namespace prom::infer
