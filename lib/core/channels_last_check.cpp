#include "core/channels_last_check.h"

#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <vector>

namespace prom {
namespace {

struct ConvCase {
  int64_t in_channels, out_channels, kernel, stride, groups, batch, size;
};

// Smooth, deterministic values in [-1, 1]: no generator is drawn from.
torch::Tensor pattern(at::IntArrayRef shape, double step) {
  int64_t n = 1;
  for (auto s : shape) n *= s;
  return torch::sin(torch::arange(n, torch::kFloat32) * step).reshape(shape);
}

std::string case_name(const ConvCase& c, const char* pass) {
  std::string kind = c.groups > 1 ? "depthwise " : "";
  return kind + std::to_string(c.kernel) + "x" + std::to_string(c.kernel) + " conv " + std::to_string(c.in_channels) +
         "->" + std::to_string(c.out_channels) + " stride " + std::to_string(c.stride) + " on " +
         std::to_string(c.batch) + "x" + std::to_string(c.size) + "x" + std::to_string(c.size) + ", " + pass;
}

// Largest difference relative to max(1, |reference|).
double relative_difference(const torch::Tensor& a, const torch::Tensor& reference) {
  const double scale = std::max(1.0, reference.abs().max().item<double>());
  return (a - reference).abs().max().item<double>() / scale;
}

struct Outputs {
  torch::Tensor out, grad_input, grad_weight;
};

Outputs run_case(const ConvCase& c, bool channels_last) {
  const auto format = channels_last ? torch::MemoryFormat::ChannelsLast : torch::MemoryFormat::Contiguous;
  auto x = pattern({c.batch, c.in_channels, c.size, c.size}, 0.37).contiguous(format).requires_grad_();
  auto w = (pattern({c.out_channels, c.in_channels / c.groups, c.kernel, c.kernel}, 0.61) * 0.2)
               .contiguous(format)
               .requires_grad_();
  auto y = torch::conv2d(x, w, {}, c.stride, c.kernel / 2, 1, c.groups);
  auto grad = pattern(y.sizes(), 0.23).contiguous(format);
  y.backward(grad);
  return {y.detach(), x.grad(), w.grad()};
}

}  // namespace

ChannelsLastCheck check_channels_last_convolutions() {
  const std::vector<ConvCase> cases = {
      // 1x1 with output channels past a multiple of 32: wrong at batch >= 16 on one thread, and at
      // small batches too on two or more (the oneDNN 3.7.2 case above).
      {144, 40, 1, 1, 1, 16, 1}, {288, 72, 1, 1, 1, 32, 2}, {288, 72, 1, 1, 1, 2, 6},  {32, 40, 1, 1, 1, 2, 6},
      {96, 24, 1, 1, 1, 1, 14},  {16, 100, 1, 1, 1, 2, 7},
      {72, 72, 3, 1, 72, 2, 14}, {72, 72, 3, 2, 72, 2, 14}, {3, 16, 3, 2, 1, 2, 16},
  };
  torch::AutoGradMode gradients(true);  // the caller may hold a NoGradGuard
  ChannelsLastCheck result;
  for (const auto& c : cases) {
    const Outputs nchw = run_case(c, false), nhwc = run_case(c, true);
    const std::pair<const char*, double> passes[] = {
        {"forward", relative_difference(nhwc.out, nchw.out)},
        {"input gradient", relative_difference(nhwc.grad_input, nchw.grad_input)},
        {"weight gradient", relative_difference(nhwc.grad_weight, nchw.grad_weight)},
    };
    for (const auto& [pass, difference] : passes) {
      if (difference > 1e-3 && difference > result.max_difference) {
        result = {false, difference, case_name(c, pass)};
      }
    }
  }
  return result;
}

std::string describe_channels_last_failure(const ChannelsLastCheck& check) {
  return "LibTorch " TORCH_VERSION " computes channels_last convolutions wrongly on this CPU with " +
         std::to_string(torch::get_num_threads()) + " threads (" + check.failing_case + ": relative difference " +
         std::to_string(check.max_difference) +
         " from NCHW); prom uses NCHW for this run (model.channels_last: false skips the check)";
}

}  // namespace prom
