#include "model/registry.h"

#include <functional>

#include "core/error.h"
#include "model/efficientnet.h"
#include "model/mnasnet.h"
#include "model/mobilenetv2.h"
#include "model/mobilenetv3.h"

namespace prom::model {
namespace {

using Factory = std::function<std::shared_ptr<ClassifierModel>(const config::ModelConfig&)>;

struct Entry {
  const char* name;
  Factory make;
};

// The settings every network's options have, from the config.
template <class Options>
Options common_options(const config::ModelConfig& c) {
  Options o;
  o.num_classes = c.num_classes;
  o.dropout = c.dropout;
  o.stride_one_stages = c.small_input ? c.small_input_stages : 0;
  o.bn_momentum = c.bn_momentum;
  return o;
}

std::shared_ptr<ClassifierModel> make_mobilenet_v2(const config::ModelConfig& c) {
  auto o = common_options<MobileNetV2Options>(c);
  o.width_mult = c.width_mult;
  o.round_nearest = c.round_nearest;
  return std::make_shared<MobileNetV2Impl>(o);
}

// round_nearest is MobileNetV2's parameter; the other builders round to multiples of 8 themselves.
void require_default_rounding(const config::ModelConfig& c) {
  if (c.round_nearest != 8)
    throw ConfigKeyError("model.round_nearest: " + c.arch + " rounds channels to multiples of 8 (torchvision); " +
                         "round_nearest applies to mobilenet_v2 only");
}

Factory mobilenet_v3(bool large) {
  return [large](const config::ModelConfig& c) -> std::shared_ptr<ClassifierModel> {
    require_default_rounding(c);
    auto o = common_options<MobileNetV3Options>(c);
    o.large = large;
    o.width_mult = c.width_mult;
    return std::make_shared<MobileNetV3Impl>(o);
  };
}

// mnasnet0_5 ... mnasnet1_3: the name fixes the width, as in torchvision.
Factory mnasnet(const char* name, double alpha) {
  return [name, alpha](const config::ModelConfig& c) -> std::shared_ptr<ClassifierModel> {
    require_default_rounding(c);
    if (c.width_mult != 1.0)
      throw ConfigKeyError(std::string("model.width_mult: ") + name +
                           " fixes its width; pick mnasnet0_5, mnasnet0_75, mnasnet1_0 or mnasnet1_3 instead");
    auto o = common_options<MNASNetOptions>(c);
    o.arch = name;
    o.alpha = alpha;
    return std::make_shared<MNASNetImpl>(o);
  };
}

std::shared_ptr<ClassifierModel> make_efficientnet_b0(const config::ModelConfig& c) {
  require_default_rounding(c);
  auto o = common_options<EfficientNetOptions>(c);
  o.width_mult = c.width_mult;
  return std::make_shared<EfficientNetImpl>(o);
}

const std::vector<Entry>& registry() {
  static const std::vector<Entry> entries = {
      {"mobilenet_v2", make_mobilenet_v2},
      {"mobilenet_v3_small", mobilenet_v3(false)},
      {"mobilenet_v3_large", mobilenet_v3(true)},
      {"mnasnet0_5", mnasnet("mnasnet0_5", 0.5)},
      {"mnasnet0_75", mnasnet("mnasnet0_75", 0.75)},
      {"mnasnet1_0", mnasnet("mnasnet1_0", 1.0)},
      {"mnasnet1_3", mnasnet("mnasnet1_3", 1.3)},
      {"efficientnet_b0", make_efficientnet_b0},
  };
  return entries;
}

}  // namespace

std::vector<std::string> model_names() {
  std::vector<std::string> names;
  for (const auto& e : registry()) names.emplace_back(e.name);
  return names;
}

std::shared_ptr<ClassifierModel> create_model(const config::ModelConfig& c) {
  for (const auto& e : registry())
    if (c.arch == e.name) return e.make(c);
  std::string known;
  for (const auto& n : model_names()) known += (known.empty() ? "" : ", ") + n;
  std::string hint = config::closest(c.arch, model_names());
  throw ConfigKeyError("model.arch: unknown architecture '" + c.arch + "' (known: " + known + ")" +
                       (hint.empty() ? "" : "; did you mean '" + hint + "'?"));
}

void to_channels_last(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  // Not contiguous(ChannelsLast): it returns a depthwise weight [C, 1, 3, 3] unchanged (size-1 dims
  // make NCHW strides count as channels-last), LibTorch then infers NCHW and runs the depthwise
  // backward up to 8x slower. empty_like gives the canonical NHWC strides, as PyTorch's .to() does.
  for (auto& p : module.parameters())
    if (p.dim() == 4) p.set_data(torch::empty_like(p.data(), torch::MemoryFormat::ChannelsLast).copy_(p.data()));
}

}  // namespace prom::model
