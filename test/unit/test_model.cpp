#include "support/catch.h"
#include <cstdlib>
#include <filesystem>
#include <torch/version.h>

#include "config/config.h"
#include "io/safetensors.h"
#include "model/mobilenetv2.h"
#include "model/registry.h"
#include "model/summary.h"
#include "model/weights.h"
#include "support/channels_last.h"
#include "support/command.h"

using namespace prom;
using Catch::Matchers::Contains;

namespace {
config::ModelConfig mnv2(int64_t classes = 1000, double width = 1.0) {
  config::ModelConfig c;
  c.num_classes = classes;
  c.width_mult = width;
  return c;
}
}  // namespace

TEST_CASE("MobileNetV2 1.0 at 224 has torchvision's parameter and MAC counts", "[model]") {
  auto model = model::create_model(mnv2());
  auto s = model::summarize(*model, 224);
  CHECK(s.total_params == 3504872);
  int64_t module_params = 0;
  for (const auto& p : model->parameters()) module_params += p.numel();
  CHECK(module_params == 3504872);  // the summary's per-layer split covers every parameter
  CHECK(s.total_macs == 300774272);  // 300.77 M
  CHECK(s.layers.size() == 53);
}

TEST_CASE("MobileNetV2 state-dict names are torchvision's", "[model]") {
  auto model = model::create_model(mnv2());
  auto sd = model::state_dict(*model);
  for (const char* key : {"features.0.0.weight", "features.0.1.running_var", "features.0.1.num_batches_tracked",
                          "features.1.conv.0.0.weight", "features.1.conv.1.weight", "features.1.conv.2.bias",
                          "features.2.conv.0.0.weight", "features.2.conv.1.0.weight", "features.2.conv.2.weight",
                          "features.2.conv.3.running_mean", "features.18.0.weight", "classifier.1.weight",
                          "classifier.1.bias"}) {
    INFO(key);
    CHECK(sd.count(key) == 1);
  }
  CHECK(sd.size() == 314);  // torchvision's mobilenet_v2().state_dict() has 314 entries
}

TEST_CASE("every layer has the role its position implies", "[model]") {
  auto model = model::create_model(mnv2());
  const auto& layers = model->layers();
  std::map<model::LayerRole, int> count;
  for (const auto& l : layers) {
    ++count[l.role];
    switch (l.role) {
      case model::LayerRole::kDepthwise: CHECK(l.groups == l.in_channels); CHECK(l.kernel == 3); break;
      case model::LayerRole::kPointwiseExpand:
      case model::LayerRole::kPointwiseProject: CHECK(l.kernel == 1); CHECK(l.groups == 1); break;
      default: break;
    }
  }
  CHECK(layers.front().role == model::LayerRole::kStem);
  CHECK(layers.front().name == "features.0.0");
  CHECK(layers[layers.size() - 2].role == model::LayerRole::kLastConv);
  CHECK(layers.back().role == model::LayerRole::kClassifier);
  CHECK(count[model::LayerRole::kDepthwise] == 17);
  CHECK(count[model::LayerRole::kPointwiseExpand] == 16);
  CHECK(count[model::LayerRole::kPointwiseProject] == 17);
  CHECK(model::role_from_name("pointwise_expand") == model::LayerRole::kPointwiseExpand);
  CHECK_THROWS_AS(model::role_from_name("pointwise"), ConfigError);
}

TEST_CASE("make_divisible and the width multiplier follow torchvision", "[model]") {
  CHECK(model::make_divisible(32 * 0.75, 8) == 24);
  CHECK(model::make_divisible(16 * 0.35, 8) == 8);
  CHECK(model::make_divisible(1280 * 1.4, 8) == 1792);
  CHECK(model::make_divisible(96 * 0.5, 8) == 48);
  auto s = model::summarize(*model::create_model(mnv2(1000, 0.5)), 224);
  CHECK(s.total_params == 1968680);  // torchvision mobilenet_v2(width_mult=0.5)
}

TEST_CASE("the small-input option removes early downsampling", "[model]") {
  auto c = mnv2(10, 1.0);
  c.small_input = true;
  c.small_input_stages = 1;
  auto model = model::create_model(c);
  auto s = model::summarize(*model, 32);
  CHECK(s.layers.front().out_h == 32);
  CHECK(s.layers[s.layers.size() - 2].out_h == 2);  // total stride 16
  c.small_input_stages = 2;
  s = model::summarize(*model::create_model(c), 32);
  CHECK(s.layers[s.layers.size() - 2].out_h == 4);  // total stride 8
  auto out = model->forward(torch::randn({2, 3, 28, 28}));
  CHECK(out.sizes() == torch::IntArrayRef({2, 10}));
}

TEST_CASE("unknown architectures are config errors with a suggestion", "[model]") {
  auto c = mnv2();
  c.arch = "mobilenet_v3";
  CHECK_THROWS_WITH(model::create_model(c), Contains("did you mean 'mobilenet_v2'"));
}

TEST_CASE("weights save and load through safetensors; mismatches are named", "[model]") {
  test::TempDir dir("model");
  auto a = model::create_model(mnv2(10, 0.5));
  auto b = model::create_model(mnv2(10, 0.5));
  model::save_weights(*a, dir.file("w.safetensors"));
  model::load_weights(*b, dir.file("w.safetensors"));
  a->eval();
  b->eval();
  auto x = torch::randn({1, 3, 64, 64});
  CHECK(torch::equal(a->forward(x), b->forward(x)));
  auto other = model::create_model(mnv2(5, 0.5));
  CHECK_THROWS_WITH(model::load_weights(*other, dir.file("w.safetensors")),
                    Contains("w.safetensors: tensor 'classifier.1.bias' has shape [10] but the model expects [5]"));
  io::TensorFile f = io::read_safetensors(dir.file("w.safetensors"));
  f.tensors.erase("features.3.conv.1.0.weight");
  f.tensors["extra"] = torch::zeros({1});
  io::write_safetensors(dir.file("bad.safetensors"), f);
  CHECK_THROWS_WITH(model::load_weights(*b, dir.file("bad.safetensors")), Contains("unexpected tensor 'extra'"));
  f.tensors.erase("extra");
  io::write_safetensors(dir.file("bad.safetensors"), f);
  CHECK_THROWS_WITH(model::load_weights(*b, dir.file("bad.safetensors")),
                    Contains("missing tensor 'features.3.conv.1.0.weight'"));
}

TEST_CASE("channels_last gives the same logits as NCHW", "[model]") {
  if (!test::channels_last_checkable("[model] channels_last gives the same logits as NCHW")) return;
  auto model = model::create_model(mnv2(10, 0.5));
  model->eval();
  torch::NoGradGuard no_grad;
  auto x = torch::randn({2, 3, 64, 64});
  auto ref = model->forward(x);
  model::to_channels_last(*model);
  auto out = model->forward(x.contiguous(torch::MemoryFormat::ChannelsLast));
  CHECK(torch::allclose(out, ref, 1e-4, 1e-5));
}

// Run by CTest's torchvision_mobilenetv2 test after test/python/make_torchvision_mobilenetv2.py.
TEST_CASE("logits match torchvision's mobilenet_v2 on the same weights", "[torchvision]") {
  const char* dir = std::getenv("PROM_CROSSCHECK_DIR");
  REQUIRE(dir != nullptr);
  for (auto [name, width, classes] : {std::tuple{"w100_c1000", 1.0, 1000}, std::tuple{"w075_c10", 0.75, 10}}) {
    INFO(name);
    auto model = model::create_model(mnv2(classes, width));
    model::load_weights(*model, std::string(dir) + "/" + name + "_weights.safetensors");
    model->eval();
    auto io = io::read_safetensors(std::string(dir) + "/" + name + "_io.safetensors");
    torch::NoGradGuard no_grad;
    auto logits = model->forward(io.tensors.at("input"));
    double diff = (logits - io.tensors.at("logits")).abs().max().item<double>();
    INFO("max abs logit difference " << diff);
    CHECK(diff <= 1e-4);
    if (!test::channels_last_checkable(std::string("torchvision mobilenet_v2 ") + name)) continue;
    model::to_channels_last(*model);
    auto cl = model->forward(io.tensors.at("input").contiguous(torch::MemoryFormat::ChannelsLast));
    CHECK((cl - io.tensors.at("logits")).abs().max().item<double>() <= 1e-4);
  }
}

TEST_CASE("the model's in-place ReLU6 equals torch's relu6 bit for bit, values and gradients, at the edges too",
          "[model]") {
  torch::manual_seed(5);
  // Random values around both edges, exact 0 and 6, and values just inside and outside them.
  auto x = torch::cat({torch::randn({4, 8, 5, 5}).flatten() * 4 + 3,
                       torch::tensor({0.0f, -0.0f, 6.0f, 5.9999995f, 6.0000005f, 1e-45f, -1e-45f, 1e30f, -1e30f})});
  auto g = torch::randn_like(x);
  auto a = x.clone().set_requires_grad(true), b = x.clone().set_requires_grad(true);
  model::DeferrableRelu6 ours;
  auto ya = ours->forward(a * 1.0f);  // on a non-leaf, as after BatchNorm
  auto yb = torch::relu6(b * 1.0f);
  CHECK(torch::equal(ya, yb));
  ya.backward(g);
  yb.backward(g);
  CHECK(torch::equal(a.grad(), b.grad()));
  torch::NoGradGuard no_grad;
  CHECK(torch::equal(ours->forward(x.clone()), torch::relu6(x)));
}

// bf16 autocast on a CPU reaches the ReLU6 backward in bf16, where LibTorch 1.13 has no
// hardtanh_backward kernel: the model's function selects the gradient itself there.
TEST_CASE("the model's in-place ReLU6 trains in bf16 too: gradients equal torch's relu6 on the same bf16 values", "[model]") {
  auto x = (torch::randn({3, 4, 6, 6}) * 4 + 3).to(torch::kBFloat16);
  auto g = torch::randn_like(x);
  auto a = x.clone().set_requires_grad(true);
  model::DeferrableRelu6 ours;
  auto y = ours->forward(a * 1.0f);
  CHECK(torch::equal(y, torch::clamp(x, 0, 6)));
  y.backward(g);
  auto mask = x.gt(0).logical_and(x.lt(6));
  CHECK(torch::equal(a.grad(), torch::where(mask, g, torch::zeros_like(g))));
}

// A direct comparison of one convolution the check also runs (144 -> 40 at batch 16: wrong on one
// thread with Debian 13's LibTorch on an AMD EPYC): where the two formats differ, the check must say so.
double direct_channels_last_difference() {
  torch::NoGradGuard no_grad;
  auto x = torch::sin(torch::arange(16 * 144, torch::kFloat32) * 0.37).reshape({16, 144, 1, 1});
  auto w = torch::cos(torch::arange(40 * 144, torch::kFloat32) * 0.61).reshape({40, 144, 1, 1}) * 0.2;
  auto nchw = torch::conv2d(x, w);
  auto nhwc = torch::conv2d(x.contiguous(torch::MemoryFormat::ChannelsLast), w.contiguous(torch::MemoryFormat::ChannelsLast));
  return (nhwc - nchw).abs().max().item<double>() / std::max(1.0, nchw.abs().max().item<double>());
}

TEST_CASE("channels_last check: it fails wherever a direct NHWC/NCHW comparison differs, on 1 and 2 threads; its "
          "line names the case, LibTorch and what prom does", "[model]") {
  const int threads = torch::get_num_threads();
  for (int n : {1, 2}) {
    torch::set_num_threads(n);
    const ChannelsLastCheck check = check_channels_last_convolutions();
    const double direct = direct_channels_last_difference();
    INFO(n << " threads: direct difference " << direct << ", check " << check.ok << " " << check.failing_case);
    CHECK((direct <= 1e-3 || !check.ok));
    CHECK(check.ok == check.failing_case.empty());
    CHECK((check.ok || check.max_difference > 1e-3));
  }
  torch::set_num_threads(threads);
  ChannelsLastCheck failed{false, 0.42, "1x1 conv 288->72 stride 1 on 2x6x6, forward"};
  const std::string line = describe_channels_last_failure(failed);
  CHECK_THAT(line, Contains("1x1 conv 288->72") && Contains(TORCH_VERSION) && Contains("uses NCHW") &&
                       Contains("model.channels_last: false"));
  CHECK(line.find('\n') == std::string::npos);
}
