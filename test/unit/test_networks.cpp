// MobileNetV3 Small/Large, MNASNet and EfficientNet-B0: built as torchvision builds them (graph,
// names, counts, logits), trainable at Fashion-MNIST size, refused by quantization with one line.
#include "support/catch.h"

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>

#include "config/config.h"
#include "core/error.h"
#include "io/safetensors.h"
#include "model/blocks.h"
#include "model/registry.h"
#include "model/summary.h"
#include "model/weights.h"
#include "quant/policy.h"
#include "support/channels_last.h"

using namespace prom;
using Catch::Matchers::Contains;

namespace {

const char* const kNewNetworks[] = {"mobilenet_v3_small", "mobilenet_v3_large", "mnasnet0_5", "mnasnet0_75",
                                    "mnasnet1_0",         "mnasnet1_3",         "efficientnet_b0"};

config::ModelConfig net_config(const std::string& arch, int64_t classes = 1000, double width = 1.0) {
  config::ModelConfig c;
  c.arch = arch;
  c.num_classes = classes;
  c.width_mult = width;
  return c;
}

// Channels of every graph tensor, checking each node against its inputs on the way.
void check_graph(const model::ClassifierModel& net) {
  const auto& graph = net.graph();
  const auto& layers = net.layers();
  std::vector<int64_t> channels{3};
  std::vector<int> uses(layers.size(), 0);
  for (size_t i = 0; i < graph.size(); ++i) {
    const auto& node = graph[i];
    INFO("node " << i << " (" << model::node_kind_name(node.kind) << ")");
    REQUIRE(node.output == static_cast<int>(i) + 1);
    for (int t : node.inputs) REQUIRE((t >= 0 && t < node.output));
    int64_t c = channels.at(node.inputs.at(0));
    switch (node.kind) {
      case model::NodeKind::kConv:
      case model::NodeKind::kLinear: {
        const auto& l = layers.at(node.layer);
        ++uses[node.layer];
        CHECK(l.in_channels == c);
        c = l.out_channels;
        break;
      }
      case model::NodeKind::kAdd:
      case model::NodeKind::kMul: CHECK(channels.at(node.inputs.at(1)) == c); break;
      case model::NodeKind::kGlobalAvgPool: break;
    }
    channels.push_back(c);
  }
  for (size_t l = 0; l < layers.size(); ++l) CHECK(uses[l] == 1);
  CHECK(graph.back().kind == model::NodeKind::kLinear);
  CHECK(layers.at(graph.back().layer).role == model::LayerRole::kClassifier);
}

}  // namespace

TEST_CASE("every network's graph visits each layer once with matching channels and ends in the classifier",
          "[model]") {
  for (const auto& arch : model::model_names()) {
    INFO(arch);
    auto net = model::create_model(net_config(arch));
    CHECK(net->arch() == arch);
    check_graph(*net);
    net->eval();
    torch::NoGradGuard no_grad;
    auto logits = net->forward(torch::randn({2, 3, 64, 64}));
    CHECK(logits.sizes() == torch::IntArrayRef({2, 1000}));
    CHECK(torch::isfinite(logits).all().item<bool>());
  }
}

TEST_CASE("the new networks' state-dict names are torchvision's", "[model]") {
  const std::map<std::string, std::vector<std::string>> keys = {
      {"mobilenet_v3_small",
       {"features.0.0.weight", "features.0.1.running_mean", "features.1.block.0.0.weight", "features.1.block.1.fc1.weight",
        "features.1.block.1.fc2.bias", "features.1.block.2.1.bias", "features.12.0.weight", "classifier.0.weight",
        "classifier.3.bias"}},
      {"mnasnet1_0",
       {"layers.0.weight", "layers.1.running_var", "layers.3.weight", "layers.6.weight", "layers.7.bias",
        "layers.8.0.layers.0.weight", "layers.8.2.layers.7.num_batches_tracked", "layers.13.0.layers.6.weight",
        "layers.14.weight", "layers.15.weight", "classifier.1.weight"}},
      {"efficientnet_b0",
       {"features.0.0.weight", "features.1.0.block.0.0.weight", "features.1.0.block.1.fc1.weight",
        "features.1.0.block.2.1.weight", "features.2.0.block.0.0.weight", "features.2.1.block.2.fc2.bias",
        "features.7.0.block.3.1.running_var", "features.8.0.weight", "classifier.1.bias"}},
  };
  for (const auto& [arch, names] : keys) {
    INFO(arch);
    auto sd = model::state_dict(*model::create_model(net_config(arch)));
    for (const auto& k : names) {
      INFO(k);
      CHECK(sd.count(k) == 1);
    }
  }
}

TEST_CASE("the new networks train at Fashion-MNIST size: 10 Adam steps on one batch lower the loss", "[model]") {
  for (const char* arch : {"mobilenet_v3_small", "mnasnet0_5", "efficientnet_b0"}) {
    INFO(arch);
    torch::manual_seed(3);
    auto c = net_config(arch, 10, arch == std::string("mnasnet0_5") ? 1.0 : 0.5);
    c.small_input = true;
    c.small_input_stages = 2;
    c.dropout = 0;
    auto net = model::create_model(c);
    net->train();
    torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(2e-3));
    auto x = torch::randn({16, 3, 28, 28});
    auto y = torch::arange(16) % 10;
    double first = 0, last = 0;
    for (int step = 0; step < 10; ++step) {
      opt.zero_grad();
      auto loss = torch::cross_entropy_loss(net->forward(x), y);
      loss.backward();
      for (const auto& p : net->parameters()) REQUIRE(torch::isfinite(p.grad()).all().item<bool>());
      opt.step();
      (step == 0 ? first : last) = loss.item<double>();
    }
    INFO("loss " << first << " -> " << last);
    CHECK(last < 0.8 * first);
  }
}

TEST_CASE("model.bn_momentum replaces every BatchNorm's momentum; 0 keeps torchvision's per network", "[model]") {
  const std::map<std::string, double> torchvision = {
      {"mobilenet_v2", 0.1}, {"mobilenet_v3_small", 0.01}, {"mnasnet0_5", 1.0 - 0.9997}, {"efficientnet_b0", 0.1}};
  for (const auto& [arch, momentum] : torchvision) {
    INFO(arch);
    for (double chosen : {0.0, 0.05}) {
      auto c = net_config(arch, 10);
      c.bn_momentum = chosen;
      auto net = model::create_model(c);
      int norms = 0;
      for (const auto& m : net->modules(false))
        if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(m.get())) {
          ++norms;
          CHECK(bn->options.momentum().value() == Approx(chosen > 0 ? chosen : momentum));
        }
      CHECK(norms > 30);
    }
  }
}

TEST_CASE("stochastic depth drops whole residual branches per sample in training, scaled by 1/(1-p); off in eval",
          "[model]") {
  // The branch is a 1x1 convolution with identity weights: x + keep * x / (1 - p) per sample.
  auto conv = model::HookedConv2d(torch::nn::Conv2dOptions(4, 4, 1).bias(false));
  {
    torch::NoGradGuard no_grad;
    conv->weight.copy_(torch::eye(4).reshape({4, 4, 1, 1}));
  }
  torch::nn::Sequential body(conv);
  model::InvertedResidual block("block", body, conv, true, 0.5);
  auto x = torch::rand({64, 4, 3, 3}) + 0.5;
  torch::NoGradGuard no_grad;
  block->train();
  auto ratio = (block->forward(x) / x).flatten(1);  // 1 (dropped) or 1 + 1 / 0.5 = 3 (kept)
  auto kept = ratio.select(1, 0);
  CHECK(torch::allclose(ratio, kept.unsqueeze(1).expand_as(ratio)));  // one decision per sample
  CHECK(torch::logical_or(torch::isclose(kept, torch::full_like(kept, 1.0)), torch::isclose(kept, torch::full_like(kept, 3.0)))
            .all()
            .item<bool>());
  const int64_t dropped = torch::isclose(kept, torch::full_like(kept, 1.0)).sum().item<int64_t>();
  CHECK((dropped > 8 && dropped < 56));  // p = 0.5 over 64 samples
  block->eval();
  CHECK(torch::allclose(block->forward(x), 2 * x));
}

TEST_CASE("weights of one architecture loaded into another: one line naming the first mismatching tensor", "[model]") {
  auto v2 = model::create_model(net_config("mobilenet_v2", 10));
  auto v3 = model::create_model(net_config("mobilenet_v3_small", 10));
  try {
    model::load_state_dict(*v3, model::state_dict(*v2), "mnv2.safetensors");
    FAIL("no error");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Contains("mnv2.safetensors: unexpected tensor 'classifier.1.bias' (not in the model)"));
  }
  auto small = model::create_model(net_config("mnasnet0_5", 10));
  auto large = model::create_model(net_config("mnasnet1_0", 10));
  try {
    model::load_state_dict(*large, model::state_dict(*small), "m05.safetensors");
    FAIL("no error");
  } catch (const Error& e) {
    CHECK_THAT(e.what(), Contains("m05.safetensors: tensor 'layers.0.weight' has shape [16, 3, 3, 3] but the model "
                                  "expects [32, 3, 3, 3]"));
  }
}

TEST_CASE("model settings a network does not have: one line naming the key", "[model]") {
  auto c = net_config("mnasnet0_5", 10, 0.5);
  CHECK_THROWS_WITH(model::create_model(c), Contains("model.width_mult: mnasnet0_5 fixes its width"));
  c = net_config("efficientnet_b0");
  c.round_nearest = 4;
  CHECK_THROWS_WITH(model::create_model(c), Contains("model.round_nearest: efficientnet_b0 rounds channels"));
  c = net_config("mobilenet_v4");
  CHECK_THROWS_WITH(model::create_model(c), Contains("mobilenet_v2, mobilenet_v3_small, mobilenet_v3_large, mnasnet0_5, "
                                                     "mnasnet0_75, mnasnet1_0, mnasnet1_3, efficientnet_b0"));
}

// Run by CTest's torchvision_<network> tests after test/python/make_torchvision_networks.py.
namespace {

void check_logits(const std::string& case_name) {
  INFO(case_name);
  const std::string dir = std::getenv("PROM_CROSSCHECK_DIR");
  auto io = io::read_safetensors(dir + "/" + case_name + "_io.safetensors");
  auto c = net_config(io.metadata.at("arch"), std::stoll(io.metadata.at("num_classes")),
                      std::stod(io.metadata.at("width_mult")));
  auto net = model::create_model(c);
  model::load_weights(*net, dir + "/" + case_name + "_weights.safetensors");
  net->eval();
  torch::NoGradGuard no_grad;
  const auto& reference = io.tensors.at("logits");
  double diff = (net->forward(io.tensors.at("input")) - reference).abs().max().item<double>();
  INFO("NCHW: max abs logit difference " << diff << " (logits up to " << reference.abs().max().item<double>() << ")");
  CHECK(diff <= 1e-4);
  if (!test::channels_last_checkable(case_name)) return;
  model::to_channels_last(*net);
  auto cl = net->forward(io.tensors.at("input").contiguous(torch::MemoryFormat::ChannelsLast));
  double cl_diff = (cl - reference).abs().max().item<double>();
  INFO("channels_last: max abs logit difference " << cl_diff);
  CHECK(cl_diff <= 1e-4);
}

void check_counts(const std::string& arch) {
  INFO(arch);
  std::ifstream in(std::string(std::getenv("PROM_CROSSCHECK_DIR")) + "/counts.json");
  auto counts = nlohmann::json::parse(in).at(arch);
  auto s = model::summarize(*model::create_model(net_config(arch)), 224);
  CHECK(s.total_params == counts.at("params").get<int64_t>());
  CHECK(s.total_macs == counts.at("macs").get<int64_t>());
}

}  // namespace

TEST_CASE("mobilenet_v3_small: logits match torchvision's (NCHW and channels_last), params and MACs equal",
          "[torchvision_mobilenet_v3_small]") {
  REQUIRE(std::getenv("PROM_CROSSCHECK_DIR") != nullptr);
  check_logits("v3_small_c1000");
  check_counts("mobilenet_v3_small");
}

TEST_CASE("mobilenet_v3_large: logits match torchvision's (NCHW and channels_last), params and MACs equal",
          "[torchvision_mobilenet_v3_large]") {
  REQUIRE(std::getenv("PROM_CROSSCHECK_DIR") != nullptr);
  check_logits("v3_large_w075_c10");
  check_counts("mobilenet_v3_large");
}

TEST_CASE("mnasnet: logits match torchvision's (NCHW and channels_last), params and MACs equal for all four widths",
          "[torchvision_mnasnet]") {
  REQUIRE(std::getenv("PROM_CROSSCHECK_DIR") != nullptr);
  check_logits("mnasnet1_0_c1000");
  check_logits("mnasnet0_5_c10");
  for (const char* arch : {"mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3"}) check_counts(arch);
}

TEST_CASE("efficientnet_b0: logits match torchvision's (NCHW and channels_last), params and MACs equal",
          "[torchvision_efficientnet_b0]") {
  REQUIRE(std::getenv("PROM_CROSSCHECK_DIR") != nullptr);
  check_logits("efficientnet_b0_c1000");
  check_counts("efficientnet_b0");
}
