#include "model/mobilenetv2.h"

#include <algorithm>
#include <cmath>

namespace prom::model {
namespace {

namespace nn = torch::nn;

ConvSpec conv_bn_relu6(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups, LayerRole role) {
  return {in, out, kernel, stride, groups, role, Activation::kRelu6};
}

struct BlockSetting {
  int64_t expand, channels, repeats, stride;
};
constexpr BlockSetting kSettings[] = {{1, 16, 1, 1},  {6, 24, 2, 2},  {6, 32, 3, 2}, {6, 64, 4, 2},
                                      {6, 96, 3, 1},  {6, 160, 3, 2}, {6, 320, 1, 1}};

}  // namespace

int64_t make_divisible(double v, int64_t divisor) {
  int64_t new_v = std::max<int64_t>(divisor, static_cast<int64_t>(v + divisor / 2.0) / divisor * divisor);
  if (static_cast<double>(new_v) < 0.9 * v) new_v += divisor;
  return new_v;
}

MobileNetV2Impl::MobileNetV2Impl(const MobileNetV2Options& o) : NetworkImpl(o.stride_one_stages, o.bn_momentum) {
  int64_t input_channel = make_divisible(32 * o.width_mult, o.round_nearest);
  int64_t last_channel = make_divisible(1280 * std::max(1.0, o.width_mult), o.round_nearest);

  nn::Sequential features;
  int64_t stem_stride = stage_stride(2);
  ConvParts stem = add_conv(conv_bn_relu6(3, input_channel, 3, stem_stride, 1, LayerRole::kStem), "features.0.0",
                            "features.0.1", 0);
  features->push_back(stem.grouped());
  int tensor = stem.output;
  for (const auto& s : kSettings) {
    int64_t output_channel = make_divisible(s.channels * o.width_mult, o.round_nearest);
    int64_t first_stride = stage_stride(s.stride);
    for (int64_t i = 0; i < s.repeats; ++i) {
      tensor = add_inverted_residual(features, tensor, input_channel, output_channel, s.expand, i == 0 ? first_stride : 1);
      input_channel = output_channel;
    }
  }
  std::string last = "features." + std::to_string(features->size());
  ConvParts last_conv = add_conv(conv_bn_relu6(input_channel, last_channel, 1, 1, 1, LayerRole::kLastConv),
                                 last + ".0", last + ".1", tensor);
  features->push_back(last_conv.grouped());
  set_body("features", features);

  auto linear = add_dropout_linear_head(last_channel, o.num_classes, o.dropout, last_conv.output);

  // torchvision's initialisation.
  init_convs_and_norms();
  torch::NoGradGuard no_grad;
  nn::init::normal_(linear->weight, 0.0, 0.01);
  nn::init::zeros_(linear->bias);
}

int MobileNetV2Impl::add_inverted_residual(nn::Sequential& features, int tensor, int64_t in, int64_t out,
                                           int64_t expand, int64_t stride) {
  std::string block = "features." + std::to_string(features->size()) + ".conv";
  int64_t hidden = static_cast<int64_t>(std::round(in * static_cast<double>(expand)));
  nn::Sequential conv;
  HookedConv2d first_conv{nullptr};
  const int block_input = tensor;
  auto name = [&](size_t i) { return block + "." + std::to_string(i); };
  if (expand != 1) {
    ConvParts e = add_conv(conv_bn_relu6(in, hidden, 1, 1, 1, LayerRole::kPointwiseExpand), name(0) + ".0",
                           name(0) + ".1", tensor);
    conv->push_back(e.grouped());
    first_conv = e.conv;
    tensor = e.output;
  }
  ConvParts dw = add_conv(conv_bn_relu6(hidden, hidden, 3, stride, hidden, LayerRole::kDepthwise),
                          name(conv->size()) + ".0", name(conv->size()) + ".1", tensor);
  conv->push_back(dw.grouped());
  if (!first_conv) first_conv = dw.conv;
  // Linear projection: 1x1 conv + BN, no activation, as two entries of the block's Sequential.
  ConvSpec project_spec{hidden, out, 1, 1, 1, LayerRole::kPointwiseProject, Activation::kNone};
  ConvParts project = add_conv(project_spec, name(conv->size()), name(conv->size() + 1), dw.output);
  project.append_to(conv);
  auto block_module = InvertedResidual("conv", conv, first_conv, stride == 1 && in == out);
  features->push_back(block_module);
  return block_module->use_residual() ? add_residual(block_module, block_input, project.output) : project.output;
}

}  // namespace prom::model
