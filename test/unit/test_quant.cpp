#include "support/catch.h"
#include <cmath>
#include <limits>
#include <set>

#include "config/config.h"
#include "model/registry.h"
#include "model/weights.h"
#include "quant/arithmetic.h"
#include "quant/fake_quant_kernel.h"
#include "quant/int_layer.h"
#include "quant/int_tensor_ops.h"
#include "quant/policy.h"
#include "quant/quantizers.h"
#include "support/command.h"

using namespace prom;
using Catch::Matchers::Contains;

namespace {
std::set<float> distinct(const torch::Tensor& t) {
  auto c = t.contiguous().to(torch::kFloat32);
  std::set<float> out(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  return out;
}

config::ModelConfig tiny_model() {
  config::ModelConfig m;
  m.num_classes = 4;
  m.width_mult = 0.25;
  m.small_input = true;
  m.dropout = 0.0;
  return m;
}

config::QuantConfig load_policy(const std::string& name) {
  test::TempDir dir("quant");
  auto path = dir.write("c.yaml", "base: " + test::source("configs/policies/" + name + ".yaml") +
                                      "\nmodel: {arch: mobilenet_v2, num_classes: 4}\n");
  return config::load_config(path).quant;
}
}  // namespace

TEST_CASE("ternary weights take exactly the values {-s, 0, +s} per group", "[quant]") {
  torch::manual_seed(1);
  auto w = torch::randn({8, 16, 1, 1});
  for (bool twn : {false, true}) {
    for (bool per_channel : {false, true}) {
      INFO("twn " << twn << " per_channel " << per_channel);
      quant::TernaryWeightImpl q(twn, per_channel);
      auto wq = q.forward(w).detach();
      auto codes = q.quantize(w);
      CHECK(distinct(codes.codes).size() == 3);
      for (int64_t c = 0; c < (per_channel ? 8 : 1); ++c) {
        auto group = per_channel ? wq[c] : wq;
        float s = per_channel ? codes.scale[c].item<float>() : codes.scale.item<float>();
        for (float v : distinct(group)) CHECK((v == 0.0f || v == s || v == -s));
      }
      CHECK(torch::equal(wq, codes.codes.to(torch::kFloat32) * codes.scale));
    }
  }
  // absmean: gamma = mean|W| per tensor, codes = clip(round(W / gamma), -1, 1).
  auto t = torch::tensor({0.1f, -0.5f, 2.0f, -0.05f}).reshape({1, 4, 1, 1});
  quant::TernaryWeightImpl absmean(false, false);
  auto q = absmean.quantize(t);
  CHECK(q.scale.item<float>() == Approx(0.6625));
  CHECK(torch::equal(q.codes.flatten(), torch::tensor({0, -1, 1, 0}, torch::kInt8)));
  // twn: delta = 0.7 * mean|W| = 0.46375; alpha = mean(0.5, 2.0).
  quant::TernaryWeightImpl twn(true, false);
  q = twn.quantize(t);
  CHECK(q.scale.item<float>() == Approx(1.25));
  CHECK(torch::equal(q.codes.flatten(), torch::tensor({0, -1, 1, 0}, torch::kInt8)));
  // twn threshold 0.2: delta = 0.1325, so 0.1 stays zero; threshold 1.6: delta = 1.06, only 2.0 survives.
  q = quant::TernaryWeightImpl(true, false, 0.2).quantize(t);
  CHECK(torch::equal(q.codes.flatten(), torch::tensor({0, -1, 1, 0}, torch::kInt8)));
  CHECK(q.scale.item<float>() == Approx(1.25));
  q = quant::TernaryWeightImpl(true, false, 1.6).quantize(t);
  CHECK(torch::equal(q.codes.flatten(), torch::tensor({0, 0, 1, 0}, torch::kInt8)));
  CHECK(q.scale.item<float>() == Approx(2.0));
  // A larger threshold zeroes more weights of a Gaussian tensor: ~58% non-zero at 0.7, ~42% at 1.0.
  auto g = torch::randn({64, 256, 1, 1});
  auto density = [&](double th) {
    return quant::TernaryWeightImpl(true, true, th).quantize(g).codes.ne(0).to(torch::kFloat64).mean().item<double>();
  };
  CHECK(density(0.7) == Approx(0.576).margin(0.02));
  CHECK(density(1.0) == Approx(0.425).margin(0.02));
}

TEST_CASE("accumulator int16: at most 128 non-zero ternary codes of each sign per row, the largest |W| kept", "[quant]") {
  torch::manual_seed(3);
  // Rows of 600 inputs: ~175 codes of each sign at threshold 0.7, so the cap binds; the last row
  // keeps 40 non-zeros only (the rest tiny), where it must change nothing.
  auto w = torch::randn({6, 600, 1, 1});
  w[5].slice(0, 40).mul_(1e-3);
  const int64_t k = config::kInt16TernaryPerSign;
  const auto free = quant::TernaryWeightImpl(true, true, 0.7).quantize(w);
  quant::TernaryWeightImpl capped_q(true, true, 0.7, k);
  const auto capped = capped_q.quantize(w);
  const auto rows = w.reshape({6, -1});
  for (int64_t r = 0; r < 6; ++r) {
    INFO("row " << r);
    const torch::Tensor c = capped.codes.reshape({6, -1})[r], f = free.codes.reshape({6, -1})[r];
    for (int sign : {1, -1}) {
      const int64_t before = f.eq(sign).sum().item<int64_t>(), after = c.eq(sign).sum().item<int64_t>();
      CHECK(after == std::min(before, k));
      if (before > k) {  // the kept ones are the largest |W| of that sign
        const torch::Tensor abs = rows[r].abs();
        CHECK(abs.masked_select(c.eq(sign)).min().item<float>() >= abs.masked_select(f.eq(sign) & c.ne(sign)).max().item<float>());
      }
    }
    CHECK(torch::equal(c.ne(0) & f.ne(0), c.ne(0)));  // only zeros added, signs kept
    // The scale is the mean |W| of the codes kept.
    CHECK(capped.scale.flatten()[r].item<float>() ==
          Approx(rows[r].abs().masked_select(c.ne(0)).mean().item<float>()).epsilon(1e-5));
  }
  CHECK(capped.codes.reshape({6, -1}).slice(0, 0, 5).ne(0).sum(1).eq(2 * k).all().item<bool>());
  CHECK(torch::equal(capped.codes[5], free.codes[5]));
  // Training uses the same codes.
  CHECK(torch::equal(capped_q.forward(w).detach(), capped.codes.to(torch::kFloat32) * capped.scale));
  config::WeightQuantConfig c;
  c.type = "ternary";
  c.method = "twn";
  c.accumulator = "int16";
  CHECK(quant::make_weight_quantizer(c, 6)->describe() == "ternary twn per-channel at most 128 per sign");
}

TEST_CASE("weight.threshold is refused where it does nothing: absmean or int8 weights", "[quant]") {
  config::WeightQuantConfig c;
  c.type = "ternary";
  c.method = "absmean";
  c.threshold = 1.0;
  CHECK_THROWS_WITH(quant::make_weight_quantizer(c, 8), Contains("weight.threshold applies to method twn"));
  c.type = "int8";
  CHECK_THROWS_WITH(quant::make_weight_quantizer(c, 8), Contains("weight.threshold applies to ternary twn"));
  c.type = "ternary";
  c.method = "twn";
  CHECK(quant::make_weight_quantizer(c, 8)->describe() == "ternary twn threshold 1 per-channel");
}

TEST_CASE("int8 weight fake quant equals torch's fake_quantize and the exported codes", "[quant]") {
  torch::manual_seed(2);
  auto w = torch::randn({6, 3, 3, 3});
  quant::Int8WeightImpl pc(true, false, 6);
  auto scale = w.abs().amax({1, 2, 3}) / 127.0;
  auto ref = torch::fake_quantize_per_channel_affine(w, scale, torch::zeros({6}, torch::kInt32), 0, -127, 127);
  CHECK(torch::equal(pc.forward(w), ref));
  auto q = pc.quantize(w);
  CHECK(torch::allclose(q.codes.to(torch::kFloat32) * q.scale, ref, 0, 1e-6));
  CHECK(q.codes.abs().max().item<int>() == 127);
  quant::Int8WeightImpl pt(false, false, 6);
  double s = w.abs().max().item<double>() / 127.0;
  CHECK(torch::allclose(pt.forward(w), torch::fake_quantize_per_tensor_affine(w, s, 0, -127, 127), 0, 1e-6));
}

TEST_CASE("vectorized per-tensor fake quant equals torch's kernel bit for bit, forward and STE", "[quant]") {
  torch::manual_seed(7);
  const float scale = 0.0371f;
  // Random values, exact ties (k + 0.5 steps, rounded half to even), both clamp edges, zeros of
  // both signs; an odd length exercises the scalar tail after the 8-wide loop.
  auto random = torch::randn({2, 5, 7, 9}) * 4;
  auto ties = (torch::arange(-300, 300).to(torch::kFloat32) + 0.5f) * scale;
  auto special = torch::tensor({0.0f, -0.0f, 255.5f * scale, -128.5f * scale, 127.49f * scale, 1e6f, -1e6f});
  auto flat = torch::cat({random.flatten(), ties, special});
  for (bool avx2 : {true, false}) {
    quant::set_fake_quant_avx2(avx2);
    for (auto [qmin, qmax] : {std::pair<int64_t, int64_t>{0, 255}, {-128, 127}}) {
      for (const auto& x : {flat, random, random.contiguous(torch::MemoryFormat::ChannelsLast)}) {
        auto s = torch::full({1}, scale);
        auto zp = torch::zeros({1}, torch::kInt32);
        auto [ref, ref_mask] = torch::_fake_quantize_per_tensor_affine_cachemask_tensor_qparams(
            x, s, zp, torch::ones({1}, torch::kLong), qmin, qmax);
        auto ours = quant::fake_quantize_per_tensor(x, s, zp, qmin, qmax);
        INFO("avx2 " << avx2 << " range [" << qmin << ", " << qmax << "] numel " << x.numel());
        // Bitwise: equal as int32 patterns (NaN-safe, sign of zero included).
        CHECK(torch::equal(ours.values.contiguous().view(torch::kInt32), ref.contiguous().view(torch::kInt32)));
        CHECK(torch::equal(ours.mask, ref_mask));
        CHECK(ours.values.strides() == x.strides());
        auto grad = torch::randn(x.sizes()).contiguous(x.suggest_memory_format());
        auto expected = torch::where(ref_mask, grad, torch::zeros({}));
        CHECK(torch::equal(quant::masked_gradient(grad, ours.mask), expected));
        // A gradient in another memory format than the mask takes torch's path, same values.
        CHECK(torch::equal(quant::masked_gradient(grad.contiguous(), ours.mask), expected.contiguous()));
      }
    }
  }
  // ReLU6 fused into the pass: bit for bit hardtanh(x, 0, 6) then torch's kernel, and the mask of
  // both backward passes (hardtanh_backward passes where 0 < x < 6).
  auto with_nan = torch::cat({flat, torch::tensor({std::nanf(""), 6.0f, 6.5f, -1.0f})});
  for (bool avx2 : {true, false}) {
    quant::set_fake_quant_avx2(avx2);
    {
      const int64_t qmin = 0, qmax = 255;  // ReLU6 is fused into unsigned quantizers only
      for (float s : {scale, 6.5f / 255}) {  // a grid that ends below 6, and one beyond it
        for (const auto& x : {with_nan, random.contiguous(torch::MemoryFormat::ChannelsLast)}) {
          auto sc = torch::full({1}, s);
          auto zp = torch::zeros({1}, torch::kInt32);
          auto [ref, ref_mask] = torch::_fake_quantize_per_tensor_affine_cachemask_tensor_qparams(
              torch::hardtanh(x, 0, 6), sc, zp, torch::ones({1}, torch::kLong), qmin, qmax);
          ref_mask = ref_mask.logical_and(x.gt(0)).logical_and(x.lt(6));
          auto ours = quant::fake_quantize_per_tensor(x, sc, zp, qmin, qmax, /*relu6=*/true);
          INFO("relu6 avx2 " << avx2 << " scale " << s);
          CHECK(torch::equal(ours.values.contiguous().view(torch::kInt32), ref.contiguous().view(torch::kInt32)));
          CHECK(torch::equal(ours.mask, ref_mask));
          // torch's path (a non-dense input) computes the same.
          auto strided = torch::stack({x, x}, -1).select(-1, 0);
          auto fallback = quant::fake_quantize_per_tensor(strided, sc, zp, qmin, qmax, true);
          CHECK(torch::equal(fallback.values.contiguous().view(torch::kInt32), ref.contiguous().view(torch::kInt32)));
          CHECK(torch::equal(fallback.mask, ref_mask));
        }
      }
    }
  }
  quant::set_fake_quant_avx2(true);
  // Non-finite inputs (and beyond 2^63 steps): torch converts them to int64 (undefined; qmin on x86). Ours stays on the
  // grid too (inf to its edge, NaN to qmin) and blocks the gradient, which is all a diverged step needs.
  auto bad = torch::tensor({std::numeric_limits<float>::infinity(), -std::numeric_limits<float>::infinity(),
                            std::nanf("")});
  auto out = quant::fake_quantize_per_tensor(bad, torch::full({1}, scale), torch::zeros({1}, torch::kInt32), -128, 127);
  CHECK(torch::equal(out.values, torch::tensor({127 * scale, -128 * scale, -128 * scale})));
  CHECK_FALSE(out.mask.any().item<bool>());
}

TEST_CASE("activation quantizers: unsigned after ReLU6, signed elsewhere, torch's grid", "[quant]") {
  auto x = torch::linspace(-3, 5, 101);
  quant::ActivationQuantImpl u(true, false, 0.5);
  u.train();
  auto y = u.forward(x);
  CHECK(u.scale() == Approx(5.0 / 255));
  CHECK(torch::equal(y, torch::fake_quantize_per_tensor_affine(x, u.scale(), 0, 0, 255)));
  CHECK(y.min().item<float>() == 0.0f);
  quant::ActivationQuantImpl sgn(false, false, 0.5);
  sgn.train();
  auto z = sgn.forward(x);
  CHECK(sgn.scale() == Approx(5.0 / 127));
  CHECK(torch::equal(z, torch::fake_quantize_per_tensor_affine(x, sgn.scale(), 0, -128, 127)));
  // EMA: the next batch moves the range by momentum; a frozen observer or eval mode does not.
  sgn.forward(x * 3);
  CHECK(sgn.scale() == Approx((0.5 * 5 + 0.5 * 15) / 127));
  sgn.set_observing(false);
  sgn.forward(x * 100);
  CHECK(sgn.scale() == Approx(10.0 / 127));
  sgn.set_observing(true);
  sgn.eval();
  sgn.forward(x * 100);
  CHECK(sgn.scale() == Approx(10.0 / 127));
}

TEST_CASE("straight-through gradients are what each method says", "[quant]") {
  torch::manual_seed(3);
  auto upstream = torch::randn({4, 8, 1, 1});
  // Ternary: identity STE.
  auto w = torch::randn({4, 8, 1, 1}).requires_grad_(true);
  quant::TernaryWeightImpl t(false, true);
  (t.forward(w) * upstream).sum().backward();
  CHECK(torch::equal(w.grad(), upstream));
  // int8 weights with the scale from max|W|: every weight is in range, identity STE.
  auto w2 = torch::randn({4, 8, 1, 1}).requires_grad_(true);
  quant::Int8WeightImpl i8(true, false, 4);
  (i8.forward(w2) * upstream).sum().backward();
  CHECK(torch::allclose(w2.grad(), upstream));
  // Activations: gradient passes inside the range, is zero where the value was clamped.
  quant::ActivationQuantImpl a(true, false, 0.0);
  a.train();
  a.forward(torch::full({4}, 2.0));  // range 2
  auto x = torch::tensor({-1.0f, 0.5f, 1.5f, 3.0f}).requires_grad_(true);
  a.forward(x).sum().backward();
  CHECK(torch::equal(x.grad(), torch::tensor({0.0f, 1.0f, 1.0f, 0.0f})));
  // LSQ: the learned scale receives a finite, non-zero gradient.
  quant::Int8WeightImpl lsq(true, true, 4);
  auto w3 = torch::randn({4, 8, 1, 1}).requires_grad_(true);
  (lsq.forward(w3) * upstream).sum().backward();
  auto params = lsq.parameters();
  REQUIRE(params.size() == 1);
  CHECK(params[0].grad().defined());
  CHECK(params[0].grad().abs().sum().item<double>() > 0);
  CHECK(torch::isfinite(params[0].grad()).all().item<bool>());
}

TEST_CASE("the PROM policy resolves the expected quantizer for every MobileNetV2 layer", "[quant]") {
  auto model = model::create_model(config::ModelConfig{});
  auto assignments = quant::resolve_policy(load_policy("prom"), *model);
  REQUIRE(assignments.size() == 53);
  for (const auto& a : assignments) {
    INFO(a.layer);
    bool pointwise = a.role == model::LayerRole::kPointwiseExpand || a.role == model::LayerRole::kPointwiseProject;
    CHECK(a.weight.type == (pointwise ? "ternary" : "int8"));
    CHECK(a.input.type == "int8");
    bool after_relu6 = a.role == model::LayerRole::kDepthwise || a.role == model::LayerRole::kPointwiseProject ||
                       a.role == model::LayerRole::kClassifier;
    CHECK(a.input_unsigned == after_relu6);
  }
  // 10 of MobileNetV2's 17 blocks have a residual connection.
  int residual = 0;
  for (const auto& a : assignments) residual += a.residual_quant;
  CHECK(residual == 10);
  auto lc = quant::resolve_policy(load_policy("prom_last_conv_ternary"), *model);
  CHECK(lc[51].role == model::LayerRole::kLastConv);
  CHECK(lc[51].weight.type == "ternary");
  CHECK(quant::format_policy(assignments).find("features.18.0") != std::string::npos);
}

TEST_CASE("a rule that matches nothing is a config error; name globs select layers", "[quant]") {
  auto model = model::create_model(config::ModelConfig{});
  config::QuantConfig c;
  config::QuantRule r;
  r.names = {"features.1.*"};
  r.weight.type = "int8";
  c.rules.push_back(r);
  auto a = quant::resolve_policy(c, *model);
  CHECK(a[1].rule == 0);  // features.1.conv.0.0
  CHECK(a[0].rule == -1);
  c.rules[0].names = {"nothing.*"};
  CHECK_THROWS_AS(quant::resolve_policy(c, *model), ConfigError);
}

TEST_CASE("a PROM QAT model's loss falls on a small set", "[quant]") {
  torch::manual_seed(0);
  auto model = model::create_model(tiny_model());
  quant::apply_policy(*model, load_policy("prom"));
  // Four classes, each a fixed random pattern plus noise.
  auto patterns = torch::randn({4, 3, 16, 16});
  auto labels = torch::arange(64) % 4;
  auto images = patterns.index_select(0, labels) + 0.3 * torch::randn({64, 3, 16, 16});
  torch::optim::SGD opt(model->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  model->train();
  double first = 0, last = 0;
  for (int step = 0; step < 40; ++step) {
    opt.zero_grad();
    auto loss = torch::cross_entropy_loss(model->forward(images), labels);
    loss.backward();
    opt.step();
    if (step == 0) first = loss.item<double>();
    last = loss.item<double>();
  }
  INFO("loss " << first << " -> " << last);
  CHECK(last < 0.5 * first);
  // The quantizers are in the state dict (checkpoints carry them).
  bool has_range = false;
  for (const auto& b : model->named_buffers()) has_range = has_range || b.key().find("input_quant.range") != std::string::npos;
  CHECK(has_range);
}

TEST_CASE("ReLU6 fused into the next quantizer: training steps equal the unfused ones bit for bit", "[quant]") {
  torch::manual_seed(3);
  auto images = torch::randn({8, 3, 16, 16}).contiguous(torch::MemoryFormat::ChannelsLast);
  auto labels = torch::arange(8) % 4;
  std::vector<std::shared_ptr<model::ClassifierModel>> models;
  for (bool fuse : {true, false}) {
    torch::manual_seed(0);
    auto m = model::create_model(tiny_model());
    auto c = load_policy("prom");
    c.fuse_relu6 = fuse;
    c.eval_forward = "simulated";  // eval runs the modules too
    quant::apply_policy(*m, c);
    model::to_channels_last(*m);
    int relu6 = 0, deferred = 0;
    std::string kept;  // ReLU6 layers left unfused
    for (const auto& l : m->layers()) {
      relu6 += l.activation == model::Activation::kRelu6;
      deferred += l.act && l.act->deferred;
      if (l.activation == model::Activation::kRelu6 && !(l.act && l.act->deferred)) kept += " " + l.name;
    }
    INFO("unfused:" << kept);
    // At width 0.25 the stem's output (8 channels) also feeds the first block's skip path, which
    // reads it through the block, not through one quantizer: that ReLU6 stays a separate op.
    CHECK(relu6 > 0);
    if (fuse) CHECK(kept == " features.0.0");
    CHECK(deferred == (fuse ? relu6 - 1 : 0));
    models.push_back(m);
  }
  std::vector<torch::optim::SGD> optims;
  for (auto& m : models) optims.emplace_back(m->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
  for (int step = 0; step < 3; ++step) {
    std::vector<torch::Tensor> losses;
    for (size_t i = 0; i < models.size(); ++i) {
      models[i]->train();
      optims[i].zero_grad();
      auto loss = torch::cross_entropy_loss(models[i]->forward(images), labels);
      loss.backward();
      optims[i].step();
      losses.push_back(loss.detach());
    }
    INFO("step " << step);
    CHECK(torch::equal(losses[0], losses[1]));
    auto fused = models[0]->named_parameters(), plain = models[1]->named_parameters();
    for (const auto& p : fused) {
      INFO(p.key());
      CHECK(torch::equal(p.value().grad(), plain[p.key()].grad()));
    }
    auto fused_buffers = models[0]->named_buffers(), plain_buffers = models[1]->named_buffers();
    for (const auto& b : fused_buffers) CHECK(torch::equal(b.value(), plain_buffers[b.key()]));
  }
  for (auto& m : models) m->eval();
  CHECK(torch::equal(models[0]->forward(images), models[1]->forward(images)));
}

TEST_CASE("freezing BN and observers at their epochs", "[quant]") {
  auto model = model::create_model(tiny_model());
  auto c = load_policy("w8a8");
  c.freeze_bn_after = 1;
  c.freeze_observers_after = 2;
  quant::apply_policy(*model, c);
  auto bn_training = [&] {
    for (auto& m : model->modules(false))
      if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(m.get())) return bn->is_training();
    return false;
  };
  auto observing = [&] {
    for (auto& m : model->modules(false))
      if (auto* a = dynamic_cast<quant::ActivationQuantImpl*>(m.get())) return a->observing();
    return false;
  };
  model->train();
  quant::on_epoch_start(*model, c, 0);
  CHECK(bn_training());
  CHECK(observing());
  model->train();
  quant::on_epoch_start(*model, c, 1);
  CHECK_FALSE(bn_training());
  CHECK(observing());
  model->train();
  quant::on_epoch_start(*model, c, 2);
  CHECK_FALSE(observing());
}

TEST_CASE("an activation quantizer's initialized flag follows loaded state", "[quant]") {
  // The forward reads a cached flag, not the buffer: a state load (resume) must still be seen.
  auto x = torch::linspace(-3, 5, 101);
  auto fresh = std::make_shared<quant::ActivationQuantImpl>(false, false, 0.5);
  auto q = std::make_shared<quant::ActivationQuantImpl>(false, false, 0.5);
  q->train();
  q->forward(x);
  CHECK(q->initialized());
  model::load_state_dict(*q, model::state_dict(*fresh), "mem");  // saved before the first batch
  CHECK_FALSE(q->initialized());
  q->eval();
  CHECK(torch::equal(q->forward(x), x));
  auto trained = std::make_shared<quant::ActivationQuantImpl>(false, false, 0.5);
  trained->train();
  trained->forward(x * 2);
  model::load_state_dict(*q, model::state_dict(*trained), "mem");
  CHECK(q->initialized());
  CHECK(q->scale() == Approx(10.0 / 127));
  CHECK(torch::equal(q->forward(x), trained->quantize(x)));
  q->train();  // a loaded initialized state is not re-initialized by the next batch: EMA
  q->forward(x * 4);
  CHECK(q->scale() == Approx((0.5 * 10 + 0.5 * 20) / 127));
}

TEST_CASE("requantize_codes equals arith::requantize per element, AVX-512 and portable, every layout", "[quant]") {
  // 19 channels: the vector loop's 8-wide steps and its scalar tail, within a channels-last pixel and
  // an NCHW plane (35 pixels). Channel parameters cover the edges of arith::requantize: multiplier 0,
  // acc / 4 (ties at acc = 4k + 2), shifts 62 and 63, a bias with acc_shift 3, and others made by a formula.
  const int64_t channels = 19;
  torch::manual_seed(11);
  quant::IntLayer l;
  l.acc_shift = 3;
  l.clamp_lo = -128;
  l.clamp_hi = 127;
  std::vector<int32_t> mult(channels), shift(channels), bias(channels);
  for (int64_t c = 0; c < channels; ++c) {
    auto m = quant::arith::quantize_multiplier(std::ldexp(0.3 + 0.05 * c, -static_cast<int>(c % 7) - 8));
    mult[c] = m.multiplier;
    shift[c] = m.right_shift;
    bias[c] = static_cast<int32_t>((c * 7919) % 4001) - 2000;
  }
  mult[0] = 0, shift[0] = 0;             // a constant channel
  mult[1] = 1 << 30, shift[1] = 35;      // M = 2^-5 of acc * 2^3: acc / 4, a tie where acc = 4k + 2
  mult[2] = 1 << 30, shift[2] = 62;      // rounds to 0 or +-1 only at the extremes
  mult[3] = (1 << 30) + 1, shift[3] = 63;  // beyond: 0
  bias[1] = 0;
  l.multiplier = torch::tensor(mult).to(torch::kInt32);
  l.right_shift = torch::tensor(shift).to(torch::kInt32);
  l.bias = torch::tensor(bias).to(torch::kInt32);
  // Integer accumulators up to 2^20 (float32 holds them exactly), small odd ones for the ties, and a
  // few with fractions (rounded half to even first, as nearbyint does).
  auto acc = torch::randint(-(1 << 20), 1 << 20, {3, channels, 5, 7}).to(torch::kFloat32);
  acc.index_put_({0, 1}, torch::arange(-17, 18).to(torch::kFloat32).reshape({5, 7}));
  acc.index_put_({1, 5, 0}, torch::tensor({2.5f, -2.5f, 3.5f, 0.5f, -0.5f, 1.25f, -7.75f}));
  auto reference = [&](const torch::Tensor& a) {
    auto flat = a.contiguous().to(torch::kFloat64).reshape({a.size(0), channels, -1});
    auto out = torch::empty(flat.sizes(), torch::kFloat32);
    for (int64_t n = 0; n < flat.size(0); ++n)
      for (int64_t c = 0; c < channels; ++c)
        for (int64_t p = 0; p < flat.size(2); ++p) {
          auto v = static_cast<int64_t>(std::nearbyint(flat[n][c][p].item<double>()));
          out[n][c][p] = quant::arith::requantize(v, 3, bias[c], {mult[c], shift[c]}, -128, 127);
        }
    return out.reshape(a.sizes());
  };
  const auto expected = reference(acc), expected_rows = reference(acc.select(3, 0).select(2, 0));
  for (bool avx512 : {true, false}) {
    quant::set_requantize_avx512(avx512);
    INFO("avx512 allowed " << avx512);
    CHECK(torch::equal(quant::requantize_codes(acc, l), expected));
    auto last = quant::requantize_codes(acc.contiguous(torch::MemoryFormat::ChannelsLast), l);
    CHECK(last.is_contiguous(torch::MemoryFormat::ChannelsLast));
    CHECK(torch::equal(last, expected));
    CHECK(torch::equal(quant::requantize_codes(acc.to(torch::kFloat64), l), expected));
    CHECK(torch::equal(quant::requantize_codes(acc.select(3, 0).select(2, 0).contiguous(), l), expected_rows));
  }
  quant::set_requantize_avx512(true);
  // The tie channel's accumulators -17..17 (position acc + 17) do tie: half to even both ways.
  auto ties = expected[0][1].flatten();
  CHECK(ties[17 + 2].item<float>() == 0);    // 0.5
  CHECK(ties[17 + 6].item<float>() == 2);    // 1.5
  CHECK(ties[17 + 10].item<float>() == 2);   // 2.5
  CHECK(ties[17 - 6].item<float>() == -2);   // -1.5
  CHECK(expected[0][0].abs().max().item<float>() == 0);  // multiplier 0: every code 0
}
