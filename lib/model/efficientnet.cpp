#include "model/efficientnet.h"

#include <algorithm>
#include <cmath>

#include "model/mobilenetv2.h"

namespace prom::model {
namespace {

namespace nn = torch::nn;

// torchvision's MBConvConfig for B0: expand ratio, kernel, stride, input and output channels, repeats.
struct StageSetting {
  int64_t expand, kernel, stride, in, out, repeats;
};
constexpr StageSetting kB0[] = {{1, 3, 1, 32, 16, 1},  {6, 3, 2, 16, 24, 2},  {6, 5, 2, 24, 40, 2},
                                {6, 3, 2, 40, 80, 3},  {6, 5, 1, 80, 112, 3}, {6, 5, 2, 112, 192, 4},
                                {6, 3, 1, 192, 320, 1}};

ConvSpec silu_conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups, LayerRole role) {
  return {in, out, kernel, stride, groups, role, Activation::kSilu};
}

}  // namespace

EfficientNetImpl::EfficientNetImpl(const EfficientNetOptions& o) : NetworkImpl(o.stride_one_stages, o.bn_momentum) {
  auto adjust = [&](int64_t channels) { return make_divisible(channels * o.width_mult, 8); };
  int64_t total_blocks = 0;
  for (const auto& s : kB0) total_blocks += s.repeats;

  nn::Sequential features;
  ConvParts stem = add_conv(silu_conv(3, adjust(kB0[0].in), 3, stage_stride(2), 1, LayerRole::kStem),
                            "features.0.0", "features.0.1", 0);
  features->push_back(stem.grouped());
  int tensor = stem.output;
  int64_t block_id = 0;
  for (const auto& s : kB0) {
    const std::string stage_name = "features." + std::to_string(features->size());
    Sequence stage;
    const int64_t first_stride = stage_stride(s.stride);
    for (int64_t r = 0; r < s.repeats; ++r, ++block_id) {
      const int64_t in = adjust(r == 0 ? s.in : s.out), out = adjust(s.out);
      const int64_t stride = r == 0 ? first_stride : 1, expanded = make_divisible(in * s.expand, 8);
      const std::string prefix = stage_name + "." + std::to_string(r) + ".block.";
      nn::Sequential block;
      auto name = [&](const char* suffix) { return prefix + std::to_string(block->size()) + suffix; };
      const int block_input = tensor;
      HookedConv2d first_conv{nullptr};
      if (expanded != in) {
        ConvParts e = add_conv(silu_conv(in, expanded, 1, 1, 1, LayerRole::kPointwiseExpand), name(".0"), name(".1"),
                               tensor);
        block->push_back(e.grouped());
        first_conv = e.conv;
        tensor = e.output;
      }
      ConvParts dw = add_conv(silu_conv(expanded, expanded, s.kernel, stride, expanded, LayerRole::kDepthwise),
                              name(".0"), name(".1"), tensor);
      block->push_back(dw.grouped());
      if (!first_conv) first_conv = dw.conv;
      const std::string se_name = prefix + std::to_string(block->size());
      block->push_back(add_squeeze_excitation(expanded, std::max<int64_t>(1, in / 4), Activation::kSilu,
                                              Activation::kSigmoid, se_name, dw.output, &tensor));
      ConvSpec project_spec{expanded, out, 1, 1, 1, LayerRole::kPointwiseProject, Activation::kNone};
      ConvParts project = add_conv(project_spec, name(".0"), name(".1"), tensor);
      block->push_back(project.grouped());
      const double drop = o.stochastic_depth * static_cast<double>(block_id) / static_cast<double>(total_blocks);
      auto module = InvertedResidual("block", block, first_conv, stride == 1 && in == out, drop);
      stage->push_back(module);
      tensor = module->use_residual() ? add_residual(module, block_input, project.output) : project.output;
    }
    features->push_back(stage);
  }
  const int64_t last_in = adjust(kB0[std::size(kB0) - 1].out), last_out = 4 * last_in;
  const std::string last = "features." + std::to_string(features->size());
  ConvParts last_conv =
      add_conv(silu_conv(last_in, last_out, 1, 1, 1, LayerRole::kLastConv), last + ".0", last + ".1", tensor);
  features->push_back(last_conv.grouped());
  set_body("features", features);

  auto linear = add_dropout_linear_head(last_out, o.num_classes, o.dropout, last_conv.output);

  // torchvision's initialisation: linear weights uniform in +-1/sqrt(classes).
  init_convs_and_norms();
  torch::NoGradGuard no_grad;
  const double range = 1.0 / std::sqrt(static_cast<double>(o.num_classes));
  nn::init::uniform_(linear->weight, -range, range);
  nn::init::zeros_(linear->bias);
}

}  // namespace prom::model
