#include "model/registry.h"

#include <functional>

#include "core/error.h"
#include "model/mobilenetv2.h"

namespace prom::model {
namespace {

using Factory = std::function<std::shared_ptr<ClassifierModel>(const config::ModelConfig&)>;

struct Entry {
  const char* name;
  Factory make;
};

std::shared_ptr<ClassifierModel> make_mobilenet_v2(const config::ModelConfig& c) {
  MobileNetV2Options o;
  o.num_classes = c.num_classes;
  o.width_mult = c.width_mult;
  o.round_nearest = c.round_nearest;
  o.dropout = c.dropout;
  o.stride_one_stages = c.small_input ? c.small_input_stages : 0;
  return std::make_shared<MobileNetV2Impl>(o);
}

const std::vector<Entry>& registry() {
  static const std::vector<Entry> entries = {
      {"mobilenet_v2", make_mobilenet_v2},
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
