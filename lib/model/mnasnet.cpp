#include "model/mnasnet.h"

#include <algorithm>
#include <cmath>

namespace prom::model {
namespace {

namespace nn = torch::nn;

// torchvision's _BN_MOMENTUM (1 - 0.9997): every BatchNorm of MNASNet.
constexpr double kBnMomentum = 1.0 - 0.9997;

ConvSpec mnas_conv(int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t groups, LayerRole role,
                   Activation act) {
  ConvSpec s{in, out, kernel, stride, groups, role, act};
  s.bn_momentum = kBnMomentum;
  return s;
}

// torchvision's _round_to_multiple_of(val, 8): round up unless within 10% above the lower multiple.
int64_t round_to_multiple_of(double val, int64_t divisor) {
  int64_t v = std::max<int64_t>(divisor, static_cast<int64_t>(val + divisor / 2.0) / divisor * divisor);
  return static_cast<double>(v) >= 0.9 * val ? v : v + divisor;
}

struct StackSetting {
  int64_t kernel, stride, expansion, repeats;
};
constexpr StackSetting kStacks[] = {{3, 2, 3, 3}, {5, 2, 3, 3}, {5, 2, 6, 3}, {3, 1, 6, 2}, {5, 2, 6, 4}, {3, 1, 6, 1}};

}  // namespace

MNASNetImpl::MNASNetImpl(const MNASNetOptions& o) : NetworkImpl(o.stride_one_stages, o.bn_momentum), arch_(o.arch) {
  int64_t depths[8];
  const int64_t base[8] = {32, 16, 24, 40, 80, 96, 192, 320};
  for (int i = 0; i < 8; ++i) depths[i] = round_to_multiple_of(base[i] * o.alpha, 8);

  nn::Sequential layers;
  auto index = [&](int64_t offset) { return "layers." + std::to_string(layers->size() + offset); };
  ConvParts stem = add_conv(mnas_conv(3, depths[0], 3, stage_stride(2), 1, LayerRole::kStem, Activation::kRelu),
                            index(0), index(1), 0);
  stem.append_to(layers);
  ConvParts dw = add_conv(mnas_conv(depths[0], depths[0], 3, 1, depths[0], LayerRole::kDepthwise, Activation::kRelu),
                          index(0), index(1), stem.output);
  dw.append_to(layers);
  ConvParts sep = add_conv(mnas_conv(depths[0], depths[1], 1, 1, 1, LayerRole::kPointwiseProject, Activation::kNone),
                           index(0), index(1), dw.output);
  sep.append_to(layers);
  int tensor = sep.output;
  int64_t in = depths[1];
  for (int s = 0; s < 6; ++s) {
    const StackSetting& st = kStacks[s];
    const int64_t out = depths[s + 2];
    const std::string stack_name = index(0);
    Sequence stack;
    const int64_t first_stride = stage_stride(st.stride);
    for (int64_t r = 0; r < st.repeats; ++r) {
      const int64_t stride = r == 0 ? first_stride : 1, mid = in * st.expansion;
      const std::string prefix = stack_name + "." + std::to_string(r) + ".layers.";
      nn::Sequential body;
      auto name = [&](int64_t offset) { return prefix + std::to_string(body->size() + offset); };
      const int block_input = tensor;
      ConvParts e = add_conv(mnas_conv(in, mid, 1, 1, 1, LayerRole::kPointwiseExpand, Activation::kRelu), name(0),
                             name(1), tensor);
      e.append_to(body);
      ConvParts d = add_conv(mnas_conv(mid, mid, st.kernel, stride, mid, LayerRole::kDepthwise, Activation::kRelu),
                             name(0), name(1), e.output);
      d.append_to(body);
      ConvParts p = add_conv(mnas_conv(mid, out, 1, 1, 1, LayerRole::kPointwiseProject, Activation::kNone), name(0),
                             name(1), d.output);
      p.append_to(body);
      auto block = InvertedResidual("layers", body, e.conv, stride == 1 && in == out);
      stack->push_back(block);
      tensor = block->use_residual() ? add_residual(block, block_input, p.output) : p.output;
      in = out;
    }
    layers->push_back(stack);
  }
  ConvParts last = add_conv(mnas_conv(in, 1280, 1, 1, 1, LayerRole::kLastConv, Activation::kRelu), index(0),
                            index(1), tensor);
  last.append_to(layers);
  set_body("layers", layers);

  auto linear = add_dropout_linear_head(1280, o.num_classes, o.dropout, last.output);

  // torchvision's initialisation (its convolutions use the ReLU gain, as init_convs_and_norms does).
  init_convs_and_norms();
  torch::NoGradGuard no_grad;
  nn::init::kaiming_uniform_(linear->weight, 0.0, torch::kFanOut, torch::kSigmoid);
  nn::init::zeros_(linear->bias);
}

}  // namespace prom::model
