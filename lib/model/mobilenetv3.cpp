#include "model/mobilenetv3.h"

#include "model/mobilenetv2.h"

namespace prom::model {
namespace {

namespace nn = torch::nn;

// torchvision's InvertedResidualConfig (channels before width scaling; dilation 1).
struct BlockSetting {
  int64_t in, kernel, expanded, out;
  bool se;
  bool hardswish;  // "HS"; ReLU ("RE") otherwise
  int64_t stride;
};

constexpr BlockSetting kLarge[] = {
    {16, 3, 16, 16, false, false, 1},    {16, 3, 64, 24, false, false, 2},   {24, 3, 72, 24, false, false, 1},
    {24, 5, 72, 40, true, false, 2},     {40, 5, 120, 40, true, false, 1},   {40, 5, 120, 40, true, false, 1},
    {40, 3, 240, 80, false, true, 2},    {80, 3, 200, 80, false, true, 1},   {80, 3, 184, 80, false, true, 1},
    {80, 3, 184, 80, false, true, 1},    {80, 3, 480, 112, true, true, 1},   {112, 3, 672, 112, true, true, 1},
    {112, 5, 672, 160, true, true, 2},   {160, 5, 960, 160, true, true, 1},  {160, 5, 960, 160, true, true, 1}};
constexpr BlockSetting kSmall[] = {
    {16, 3, 16, 16, true, false, 2},  {16, 3, 72, 24, false, false, 2}, {24, 3, 88, 24, false, false, 1},
    {24, 5, 96, 40, true, true, 2},   {40, 5, 240, 40, true, true, 1},  {40, 5, 240, 40, true, true, 1},
    {40, 5, 120, 48, true, true, 1},  {48, 5, 144, 48, true, true, 1},  {48, 5, 288, 96, true, true, 2},
    {96, 5, 576, 96, true, true, 1},  {96, 5, 576, 96, true, true, 1}};

// torchvision's norm_layer for MobileNetV3: BatchNorm2d(eps=0.001, momentum=0.01).
ConvSpec v3_conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups, LayerRole role,
                 Activation act) {
  ConvSpec s{in, out, kernel, stride, groups, role, act};
  s.bn_eps = 1e-3;
  s.bn_momentum = 0.01;
  return s;
}

}  // namespace

MobileNetV3Impl::MobileNetV3Impl(const MobileNetV3Options& o) : NetworkImpl(o.stride_one_stages, o.bn_momentum), large_(o.large) {
  auto adjust = [&](int64_t channels) { return make_divisible(channels * o.width_mult, 8); };
  const BlockSetting* settings = o.large ? kLarge : kSmall;
  const size_t blocks = o.large ? std::size(kLarge) : std::size(kSmall);

  nn::Sequential features;
  ConvParts stem = add_conv(v3_conv(3, adjust(settings[0].in), 3, stage_stride(2), 1, LayerRole::kStem,
                                    Activation::kHardswish),
                            "features.0.0", "features.0.1", 0);
  features->push_back(stem.grouped());
  int tensor = stem.output;
  for (size_t b = 0; b < blocks; ++b) {
    const BlockSetting& s = settings[b];
    const int64_t in = adjust(s.in), expanded = adjust(s.expanded), out = adjust(s.out);
    const int64_t stride = stage_stride(s.stride);
    const Activation act = s.hardswish ? Activation::kHardswish : Activation::kRelu;
    const std::string prefix = "features." + std::to_string(features->size()) + ".block.";
    nn::Sequential block;
    auto name = [&](const char* suffix) { return prefix + std::to_string(block->size()) + suffix; };
    const int block_input = tensor;
    HookedConv2d first_conv{nullptr};
    if (expanded != in) {
      ConvParts e = add_conv(v3_conv(in, expanded, 1, 1, 1, LayerRole::kPointwiseExpand, act), name(".0"),
                             name(".1"), tensor);
      block->push_back(e.grouped());
      first_conv = e.conv;
      tensor = e.output;
    }
    ConvParts dw = add_conv(v3_conv(expanded, expanded, s.kernel, stride, expanded, LayerRole::kDepthwise, act),
                            name(".0"), name(".1"), tensor);
    block->push_back(dw.grouped());
    if (!first_conv) first_conv = dw.conv;
    tensor = dw.output;
    if (s.se) {
      const std::string se_name = prefix + std::to_string(block->size());
      block->push_back(add_squeeze_excitation(expanded, make_divisible(expanded / 4, 8), Activation::kRelu,
                                              Activation::kHardsigmoid, se_name, tensor, &tensor));
    }
    ConvParts project = add_conv(v3_conv(expanded, out, 1, 1, 1, LayerRole::kPointwiseProject, Activation::kNone),
                                 name(".0"), name(".1"), tensor);
    block->push_back(project.grouped());
    auto module = InvertedResidual("block", block, first_conv, stride == 1 && in == out);
    features->push_back(module);
    tensor = module->use_residual() ? add_residual(module, block_input, project.output) : project.output;
  }
  const int64_t last_in = adjust(settings[blocks - 1].out), last_out = 6 * last_in;
  const std::string last = "features." + std::to_string(features->size());
  ConvParts last_conv = add_conv(v3_conv(last_in, last_out, 1, 1, 1, LayerRole::kLastConv, Activation::kHardswish),
                                 last + ".0", last + ".1", tensor);
  features->push_back(last_conv.grouped());
  set_body("features", features);

  const int64_t last_channel = adjust(o.large ? 1280 : 1024);
  int hidden = -1, logits = -1;
  auto fc = add_linear(last_out, last_channel, LayerRole::kClassifierHidden, Activation::kHardswish, "classifier.0",
                       add_head_pool(last_conv.output), &hidden);
  ActivationLayer hidden_activation = layers().back().activation_layer;
  auto classifier = add_linear(last_channel, o.num_classes, LayerRole::kClassifier, Activation::kNone, "classifier.3",
                               hidden, &logits);
  set_head("classifier", nn::Sequential(fc, hidden_activation, nn::Dropout(o.dropout),
                                        classifier));

  // torchvision's initialisation.
  init_convs_and_norms();
  torch::NoGradGuard no_grad;
  for (auto& linear : {fc, classifier}) {
    nn::init::normal_(linear->weight, 0.0, 0.01);
    nn::init::zeros_(linear->bias);
  }
}

}  // namespace prom::model
