// The pieces of the training engine against hand computations: LR schedules, weight-decay groups,
// the optimizers, label smoothing, distillation, EMA, checkpoints and the tensor source.
#include "support/catch.h"
#include <cmath>
#include <limits>
#include <set>

#include "app/sources.h"
#include "config/config.h"
#include "core/error.h"
#include "core/host_read.h"
#include "data/tensor_source.h"
#include "model/registry.h"
#include "model/weights.h"
#include "prom/version.h"
#include "quant/policy.h"
#include "support/command.h"
#include "train/checkpoint.h"
#include "train/ema.h"
#include "train/grad_scaler.h"
#include "train/loss.h"
#include "train/optimizer.h"
#include "train/schedule.h"
#include "train/trainer.h"

using namespace prom;
using Catch::Matchers::Contains;

namespace {

config::ModelConfig tiny_model(int64_t classes = 4) {
  config::ModelConfig c;
  c.num_classes = classes;
  c.width_mult = 0.25;
  c.small_input = true;
  return c;
}

config::ScheduleConfig schedule(const std::string& name, double warmup_epochs) {
  config::ScheduleConfig s;
  s.name = name;
  s.warmup_epochs = warmup_epochs;
  return s;
}

}  // namespace

TEST_CASE("LR schedule: linear warm-up, then cosine", "[train]") {
  auto s = schedule("cosine", 1);
  s.warmup_start_factor = 0.01;
  train::LrSchedule lr(s, 0.1, 10, 100);  // 1000 iterations, 100 of warm-up
  CHECK(lr.warmup_iters() == 100);
  CHECK(lr.lr(0) == Approx(0.001));
  CHECK(lr.lr(50) == Approx(0.1 * (0.01 + 0.99 * 0.5)));
  CHECK(lr.lr(100) == Approx(0.1));
  CHECK(lr.lr(100 + 450) == Approx(0.05));  // half way through the 9 cosine epochs
  CHECK(lr.lr(100 + 300) == Approx(0.1 * 0.5 * (1 + std::cos(M_PI / 3))));
  CHECK(lr.lr(1000) == Approx(0.0).margin(1e-12));
  s.min_lr = 0.001;
  train::LrSchedule floored(s, 0.1, 10, 100);
  CHECK(floored.lr(1000) == Approx(0.001));
  CHECK(floored.lr(550) == Approx(0.001 + 0.099 * 0.5));
}

TEST_CASE("LR schedule: step and exponential decay per epoch", "[train]") {
  auto st = schedule("step", 0);
  st.gamma = 0.1;
  st.step_epochs = 3;
  train::LrSchedule step(st, 0.1, 10, 100);
  CHECK(step.lr(299) == Approx(0.1));
  CHECK(step.lr(300) == Approx(0.01));
  CHECK(step.lr(650) == Approx(0.001));
  // torchvision's V1 MobileNetV2 recipe: lr 0.045, x0.98 per epoch.
  auto ex = schedule("exponential", 0);
  ex.gamma = 0.98;
  train::LrSchedule expo(ex, 0.045, 300, 100);
  CHECK(expo.lr(0) == Approx(0.045));
  CHECK(expo.lr(99) == Approx(0.045));
  CHECK(expo.lr(100) == Approx(0.045 * 0.98));
  CHECK(expo.lr(250) == Approx(0.045 * 0.98 * 0.98));
  // Warm-up first: the decay counts epochs from the end of the warm-up.
  auto wex = schedule("exponential", 2);
  wex.gamma = 0.5;
  wex.warmup_start_factor = 0.1;
  train::LrSchedule warm(wex, 1.0, 10, 10);
  CHECK(warm.lr(10) == Approx(0.1 + 0.9 * 0.5));
  CHECK(warm.lr(20) == Approx(1.0));
  CHECK(warm.lr(30) == Approx(0.5));
  CHECK(train::LrSchedule(schedule("constant", 0), 0.3, 5, 7).lr(30) == Approx(0.3));
  CHECK_THROWS_AS(train::LrSchedule(schedule("cosine", 11), 0.1, 10, 100), ConfigError);
}

TEST_CASE("weight decay: BatchNorm parameters and biases excluded when asked", "[train]") {
  auto model = model::create_model(tiny_model());
  std::set<std::string> bn_params;
  for (const auto& layer : model->layers())
    if (!layer.bn_name.empty()) {
      bn_params.insert(layer.bn_name + ".weight");
      bn_params.insert(layer.bn_name + ".bias");
    }
  REQUIRE(!bn_params.empty());
  config::OptimConfig oc;
  oc.no_decay_bn_bias = true;
  auto groups = train::param_groups(*model, oc);
  const int64_t total = static_cast<int64_t>(model->parameters().size());
  CHECK(static_cast<int64_t>(groups.size()) == total);
  int decayed = 0;
  for (const auto& g : groups) {
    INFO(g.name);
    const bool is_bias = g.name.size() > 5 && g.name.substr(g.name.size() - 5) == ".bias";
    CHECK(g.decay == !(bn_params.count(g.name) || is_bias));
    decayed += g.decay;
  }
  CHECK(decayed == static_cast<int>(model->layers().size()));  // one weight per conv/linear layer
  oc.no_decay_bn_bias = false;
  for (const auto& g : train::param_groups(*model, oc)) CHECK(g.decay);

  // The effect: with a zero gradient only decayed parameters move (SGD, lr 0.5, wd 0.1: x0.95).
  oc.no_decay_bn_bias = true;
  oc.weight_decay = 0.1;
  oc.momentum = 0;
  oc.lr = 0.5;
  auto ps = train::param_groups(*model, oc);
  std::map<std::string, torch::Tensor> before;
  for (auto& p : ps) {
    before[p.name] = p.param.detach().clone();
    p.param.mutable_grad() = torch::zeros_like(p.param);
  }
  train::Optimizer opt(ps, oc);
  opt.step();
  for (const auto& p : ps) {
    INFO(p.name);
    torch::Tensor expect = p.decay ? before[p.name] * 0.95 : before[p.name];
    CHECK(torch::allclose(p.param.detach(), expect));
  }
}

TEST_CASE("SGD with Nesterov momentum and AdamW follow torch.optim's update rules", "[train]") {
  config::OptimConfig oc;
  oc.lr = 0.1;
  oc.momentum = 0.9;
  oc.nesterov = true;
  oc.weight_decay = 0.01;
  torch::Tensor p = torch::tensor({1.0, -2.0}).set_requires_grad(true);
  train::Optimizer sgd({{"w", p, true}}, oc);
  double w[2] = {1.0, -2.0}, buf[2] = {0, 0};
  const double grads[2][2] = {{0.5, 0.25}, {-1.0, 2.0}};
  for (int step = 0; step < 2; ++step) {
    p.mutable_grad() = torch::tensor({grads[step][0], grads[step][1]});
    sgd.step();
    for (int i = 0; i < 2; ++i) {
      double d = grads[step][i] + 0.01 * w[i];
      buf[i] = step == 0 ? d : 0.9 * buf[i] + d;
      w[i] -= 0.1 * (d + 0.9 * buf[i]);
    }
  }
  CHECK(p[0].item<double>() == Approx(w[0]));
  CHECK(p[1].item<double>() == Approx(w[1]));
  auto state = sgd.state_tensors();
  REQUIRE(state.count("optim/w/momentum_buffer") == 1);
  CHECK(state["optim/w/momentum_buffer"][1].item<double>() == Approx(buf[1]));

  oc.name = "adamw";
  oc.lr = 0.01;
  oc.weight_decay = 0.1;
  torch::Tensor q = torch::tensor({1.0, -2.0}).set_requires_grad(true);
  train::Optimizer adamw({{"q", q, true}}, oc);
  q.mutable_grad() = torch::tensor({0.5, -3.0});
  adamw.step();
  // Step 1: m_hat = g, v_hat = g^2, so the Adam step is lr * g / (|g| + eps) after the decay.
  CHECK(q[0].item<double>() == Approx(1.0 * (1 - 0.001) - 0.01 * 0.5 / (0.5 + 1e-8)));
  CHECK(q[1].item<double>() == Approx(-2.0 * (1 - 0.001) + 0.01 * 3.0 / (3.0 + 1e-8)));
  CHECK(adamw.state_tensors().size() == 2);  // exp_avg, exp_avg_sq
}

TEST_CASE("cross-entropy with label smoothing matches the hand computation", "[train]") {
  torch::Tensor logits = torch::tensor({{1.0, 2.0, 3.0}, {0.5, -1.0, 0.0}});
  torch::Tensor labels = torch::tensor({0, 2}, torch::kInt64);
  const double eps = 0.1;
  double expect = 0;
  const double l[2][3] = {{1, 2, 3}, {0.5, -1, 0}};
  const int y[2] = {0, 2};
  for (int n = 0; n < 2; ++n) {
    double z = 0;
    for (double v : l[n]) z += std::exp(v);
    for (int c = 0; c < 3; ++c) {
      double q = (c == y[n] ? 1 - eps : 0) + eps / 3;
      expect -= q * (l[n][c] - std::log(z));
    }
  }
  expect /= 2;
  CHECK(train::classification_loss(logits, labels, eps).item<double>() == Approx(expect));
  CHECK(train::classification_loss(logits, labels, 0).item<double>() ==
        Approx((-(1 - std::log(std::exp(1) + std::exp(2) + std::exp(3))) -
                (0 - std::log(std::exp(0.5) + std::exp(-1) + 1))) / 2));
}

TEST_CASE("distillation loss: zero for the teacher itself, T^2-scaled KL otherwise", "[train]") {
  torch::Tensor s = torch::tensor({{2.0, 0.0}});
  CHECK(train::distillation_loss(s, s, 4.0).item<double>() == Approx(0).margin(1e-7));
  torch::Tensor t = torch::tensor({{0.0, 2.0}});
  const double T = 2.0;
  double ps0 = 1 / (1 + std::exp(-1.0)), pt0 = 1 / (1 + std::exp(1.0));  // softmax([1, 0]) and ([0, 1])
  double kl = pt0 * std::log(pt0 / ps0) + (1 - pt0) * std::log((1 - pt0) / (1 - ps0));
  CHECK(train::distillation_loss(s, t, T).item<double>() == Approx(kl * T * T));
}

TEST_CASE("top-1 and top-5 counts", "[train]") {
  torch::Tensor logits = torch::tensor({{0.1, 0.9, 0.0, 0.0, 0.0, 0.0, 0.5},
                                        {0.9, 0.1, 0.2, 0.3, 0.4, 0.5, 0.0}});
  auto c = train::count_correct(logits, torch::tensor({1, 6}, torch::kInt64));
  CHECK(c.top1 == 1);
  CHECK(c.top5 == 1);  // label 6 of row 2 has the smallest logit
  c = train::count_correct(logits, torch::tensor({6, 2}, torch::kInt64));
  CHECK(c.top1 == 0);
  CHECK(c.top5 == 2);
}

TEST_CASE("EMA: shadow = decay * shadow + (1 - decay) * model, buffers included; reset copies the model", "[train]") {
  auto m = model::create_model(tiny_model());
  train::ModelEma ema(model::create_model(tiny_model()), *m, 0.9);
  auto w0 = m->named_parameters()["classifier.1.weight"].detach().clone();
  CHECK(torch::equal(ema.shadow().named_parameters()["classifier.1.weight"], w0));
  {
    torch::NoGradGuard g;
    for (auto& p : m->parameters()) p.add_(1.0);
    for (auto& b : m->named_buffers()) if (b.key().find("running_mean") != std::string::npos) b.value().fill_(2.0);
    m->named_buffers()["features.0.1.num_batches_tracked"].fill_(7);
  }
  ema.update(*m);
  CHECK(torch::allclose(ema.shadow().named_parameters()["classifier.1.weight"], w0 + 0.1));
  CHECK(torch::allclose(ema.shadow().named_buffers()["features.0.1.running_mean"],
                        torch::full_like(ema.shadow().named_buffers()["features.0.1.running_mean"], 0.2)));
  CHECK(ema.shadow().named_buffers()["features.0.1.num_batches_tracked"].item<int64_t>() == 7);
  ema.update(*m);
  CHECK(torch::allclose(ema.shadow().named_parameters()["classifier.1.weight"], w0 + 0.19));
  ema.reset(*m);  // train.ema.start_epoch: the shadow becomes the model, every parameter and buffer
  for (const auto& p : m->named_parameters()) CHECK(torch::equal(ema.shadow().named_parameters()[p.key()], p.value()));
  for (const auto& b : m->named_buffers()) CHECK(torch::equal(ema.shadow().named_buffers()[b.key()], b.value()));
}

TEST_CASE("checkpoint round trip: model, optimizer, EMA, RNG, progress, config, classes", "[train]") {
  test::TempDir dir("ckpt");
  auto m = model::create_model(tiny_model());
  config::OptimConfig oc;
  train::Optimizer opt(train::param_groups(*m, oc), oc);
  m->train();
  auto loss = train::classification_loss(m->forward(torch::randn({4, 3, 16, 16})), torch::tensor({0, 1, 2, 3}), 0.1);
  loss.backward();
  opt.step();
  train::Checkpoint c;
  c.model = model::state_dict(*m);
  c.optim = opt.state_tensors();
  c.ema = model::state_dict(*m);
  train::capture_rng(c, torch::Device(torch::kCPU));
  c.progress.epoch = 3;
  c.progress.batches_done = 5;
  c.progress.iteration = 35;
  c.progress.optimizer_steps = 35;
  c.progress.best_top1 = 71.25;
  c.progress.best_epoch = 2;
  c.progress.loss_sum = 1.0 / 3.0;
  c.progress.samples = 160;
  c.progress.correct = 99;
  c.config_yaml = "run:\n  name: x\n";
  c.classes = {"cat", "dog", "emu", "fox"};
  const std::string path = dir.file("c.safetensors");
  train::save_checkpoint(path, c);

  train::Checkpoint r = train::load_checkpoint(path);
  CHECK(r.model.size() == c.model.size());
  for (const auto& [k, t] : c.model) {
    INFO(k);
    REQUIRE(r.model.count(k) == 1);
    CHECK(torch::equal(r.model[k], t));
  }
  CHECK(r.optim.size() == c.optim.size());
  CHECK(r.optim.count("optim/classifier.1.weight/momentum_buffer") == 1);
  CHECK(r.ema.size() == c.ema.size());
  CHECK(torch::equal(r.rng_cpu, c.rng_cpu));
  CHECK(r.progress.epoch == 3);
  CHECK(r.progress.batches_done == 5);
  CHECK(r.progress.iteration == 35);
  CHECK(r.progress.best_top1 == 71.25);
  CHECK(r.progress.loss_sum == 1.0 / 3.0);  // exact: the JSON keeps every bit
  CHECK(r.progress.correct == 99);
  CHECK(r.config_yaml == c.config_yaml);
  CHECK(r.classes == c.classes);
  CHECK(r.prom_version == PROM_VERSION);

  // The optimizer state goes back by name; the RNG continues where it was captured.
  train::Optimizer opt2(train::param_groups(*m, oc), oc);
  opt2.load_state(r.optim, r.progress.optimizer_steps, path);
  for (const auto& [k, t] : opt2.state_tensors()) CHECK(torch::equal(t, c.optim[k]));
  torch::Tensor a = torch::randn({8});
  train::restore_rng(r, torch::Device(torch::kCPU));
  CHECK(torch::equal(torch::randn({8}), a));

  // A checkpoint is also a weights file (torchvision names).
  auto m2 = model::create_model(tiny_model());
  std::vector<std::string> classes;
  model::load_state_dict(*m2, train::load_model_tensors(path, &classes), path);
  CHECK(classes == c.classes);
  CHECK_THROWS_WITH(train::check_classes(c.classes, {"cat", "dog", "elk", "fox"}, path),
                    Contains("class 2 is 'emu' in the checkpoint but 'elk' in the data"));
  // A plain weights file is not a checkpoint.
  model::save_weights(*m, dir.file("w.safetensors"));
  CHECK_THROWS_WITH(train::load_checkpoint(dir.file("w.safetensors")), Contains("not a prom checkpoint"));
}

TEST_CASE("tensor source: per-epoch order from (seed, epoch), disjoint shards, drop_last", "[train]") {
  const int64_t n = 50;
  torch::Tensor images = torch::arange(n, torch::kFloat32).view({n, 1, 1, 1}).expand({n, 3, 2, 2}).contiguous();
  torch::Tensor labels = torch::arange(n, torch::kInt64).remainder(5);
  std::vector<std::string> classes = data::synthetic_class_names(5);
  data::TensorSourceOptions o;
  o.batch_size = 8;
  o.seed = 7;
  data::TensorSource a(images, labels, classes, o), b(images, labels, classes, o);
  CHECK(a.epoch_order(3) == b.epoch_order(3));
  CHECK(a.epoch_order(3) != a.epoch_order(4));
  o.seed = 8;
  CHECK(data::TensorSource(images, labels, classes, o).epoch_order(3) != a.epoch_order(3));
  CHECK(a.batches_per_epoch() == 7);

  // Batches carry the samples the order names, with their labels.
  a.start_epoch(2);
  std::vector<int64_t> seen;
  while (auto batch = a.next()) {
    for (int64_t i = 0; i < batch->indices.size(0); ++i) {
      int64_t idx = batch->indices[i].item<int64_t>();
      seen.push_back(idx);
      CHECK(batch->images[i][0][0][0].item<float>() == static_cast<float>(idx));
      CHECK(batch->labels[i].item<int64_t>() == idx % 5);
    }
  }
  CHECK(seen == a.epoch_order(2));

  o.world_size = 3;
  o.drop_last = true;
  std::set<int64_t> all;
  for (int rank = 0; rank < 3; ++rank) {
    o.rank = rank;
    data::TensorSource shard(images, labels, classes, o);
    CHECK(shard.size() == 16);
    CHECK(shard.batches_per_epoch() == 2);
    for (int64_t i : shard.epoch_order(1)) CHECK(all.insert(i).second);  // disjoint
    shard.start_epoch(1);
    int batches = 0;
    while (shard.next()) ++batches;
    CHECK(batches == 2);
  }
  CHECK(all.size() == 48);
}

TEST_CASE("synthetic data: a pure function of the seed, with the configured shape", "[train]") {
  config::Config c;
  c.data.synthetic.enabled = true;
  c.data.synthetic.samples = 40;
  c.data.synthetic.eval_samples = 12;
  c.data.synthetic.image_size = 8;
  c.data.synthetic.classes = 4;
  data::TensorSourceOptions o;
  o.batch_size = 64;
  auto first = [&](bool eval) {
    auto s = data::make_synthetic_source(c, eval, o);
    s->start_epoch(0);
    return *s->next();
  };
  auto x = first(false), y = first(false), e = first(true);
  CHECK(x.images.sizes() == torch::IntArrayRef({40, 3, 8, 8}));
  CHECK(e.images.sizes() == torch::IntArrayRef({12, 3, 8, 8}));
  CHECK(torch::equal(x.images, y.images));
  CHECK(data::make_synthetic_source(c, false, o)->classes() == data::synthetic_class_names(4));
  c.run.seed = 1;
  CHECK(!torch::equal(first(false).images, x.images));
}

namespace {

// torch.optim's for-loop SGD/AdamW, one parameter at a time: the arithmetic train::Optimizer used
// before it switched to multi-tensor (_foreach_*) ops.
void loop_step(const config::OptimConfig& oc, std::vector<train::NamedParam>& ps, int64_t step,
               std::map<std::string, std::map<std::string, torch::Tensor>>& state) {
  torch::NoGradGuard g;
  for (auto& np : ps) {
    torch::Tensor p = np.param, grad = p.grad();
    const double wd = np.decay ? oc.weight_decay : 0.0;
    if (oc.name == "sgd") {
      if (wd != 0) grad = grad.add(p, wd);
      auto& bufs = state[np.name];
      if (!bufs.count("m")) bufs["m"] = grad.clone();
      else bufs["m"].mul_(oc.momentum).add_(grad);
      grad = oc.nesterov ? grad.add(bufs["m"], oc.momentum) : bufs["m"];
      p.add_(grad, -oc.lr);
    } else {
      if (wd != 0) p.mul_(1.0 - oc.lr * wd);
      auto& bufs = state[np.name];
      if (!bufs.count("m")) bufs["m"] = torch::zeros_like(p), bufs["v"] = torch::zeros_like(p);
      bufs["m"].mul_(oc.beta1).add_(grad, 1.0 - oc.beta1);
      bufs["v"].mul_(oc.beta2).addcmul_(grad, grad, 1.0 - oc.beta2);
      const double bc1 = 1.0 - std::pow(oc.beta1, static_cast<double>(step));
      const double bc2 = 1.0 - std::pow(oc.beta2, static_cast<double>(step));
      p.addcdiv_(bufs["m"], (bufs["v"].sqrt() / std::sqrt(bc2)).add_(oc.eps), -oc.lr / bc1);
    }
  }
}

}  // namespace

TEST_CASE("multi-tensor SGD and AdamW updates equal the per-parameter loop bit for bit on CPU", "[train]") {
  for (const char* name : {"sgd", "adamw"}) {
    INFO(name);
    config::OptimConfig oc;
    oc.name = name;
    oc.lr = 0.05;
    oc.nesterov = true;
    oc.weight_decay = 0.01;
    torch::manual_seed(7);
    auto a = model::create_model(tiny_model());
    torch::manual_seed(7);
    auto b = model::create_model(tiny_model());  // the same weights
    auto pa = train::param_groups(*a, oc), pb = train::param_groups(*b, oc);
    train::Optimizer opt(pa, oc);
    std::map<std::string, std::map<std::string, torch::Tensor>> state;
    for (int64_t step = 1; step <= 3; ++step) {
      for (size_t i = 0; i < pa.size(); ++i) {
        torch::Tensor grad = torch::randn_like(pa[i].param);
        pa[i].param.mutable_grad() = grad;
        pb[i].param.mutable_grad() = grad.clone();
      }
      opt.step();
      loop_step(oc, pb, step, state);
    }
    for (size_t i = 0; i < pa.size(); ++i) {
      INFO(pa[i].name);
      CHECK(torch::equal(pa[i].param, pb[i].param));
    }
  }
}

TEST_CASE("fp16 loss scaling: an Inf gradient skips the step and halves the scale, good steps double it", "[train]") {
  train::GradScaler::Options o;
  o.growth_interval = 3;
  train::GradScaler scaler(o);
  CHECK(scaler.scale() == 65536.0);  // torch.cuda.amp.GradScaler's defaults
  CHECK(train::GradScaler().scale() == 65536.0);
  torch::Tensor w = torch::tensor({1.0f, -2.0f}).set_requires_grad(true);
  config::OptimConfig oc;
  oc.momentum = 0;
  oc.lr = 0.1;
  train::Optimizer opt({{"w", w, false}}, oc);
  // A scaled backward: d(scale * loss)/dw = scale * 3.
  (scaler.scale_loss((w * 3.0f).sum())).backward();
  CHECK(w.grad()[0].item<float>() == 3.0f * 65536.0f);
  REQUIRE(scaler.unscale({w}));
  CHECK(torch::equal(w.grad(), torch::tensor({3.0f, 3.0f})));  // exact: the scale is a power of 2
  // A fabricated overflow: the trainer's rule (train_step.cpp) skips the update.
  w.mutable_grad() = torch::tensor({std::numeric_limits<float>::infinity(), 1.0f});
  const torch::Tensor before = w.detach().clone();
  const bool finite = scaler.unscale({w});
  CHECK_FALSE(finite);
  if (finite) opt.step();
  scaler.update(finite);
  CHECK(torch::equal(w.detach(), before));
  CHECK(scaler.scale() == 32768.0);
  CHECK(scaler.growth_tracker() == 0);
  w.mutable_grad() = torch::tensor({std::nanf(""), 1.0f});
  CHECK_FALSE(scaler.unscale({w}));
  scaler.update(false);
  CHECK(scaler.scale() == 16384.0);
  for (int i = 0; i < 3; ++i) scaler.update(true);  // growth_interval good steps in a row
  CHECK(scaler.scale() == 32768.0);
  CHECK(scaler.growth_tracker() == 0);
  scaler.update(true);
  // The state travels in checkpoints and resumes exactly.
  test::TempDir dir("scaler");
  train::Checkpoint c;
  c.model = model::state_dict(*model::create_model(tiny_model()));
  c.progress.loss_scale = scaler.scale();
  c.progress.loss_scale_growth = scaler.growth_tracker();
  train::save_checkpoint(dir.file("c.safetensors"), c);
  train::Checkpoint r = train::load_checkpoint(dir.file("c.safetensors"));
  train::GradScaler resumed(o);
  resumed.load(r.progress.loss_scale, r.progress.loss_scale_growth);
  CHECK(resumed.scale() == 32768.0);
  CHECK(resumed.growth_tracker() == 1);
  CHECK_THROWS_WITH(resumed.load(0.0, 0), Contains("expected a positive scale"));
}

TEST_CASE("EMA of a QAT model: quantizer state taken after the first batch, ranges copied, LSQ steps averaged",
          "[train]") {
  test::TempDir dir("ema-qat");
  auto path = dir.write("c.yaml", "base: " + test::source("configs/policies/prom.yaml") +
                                      "\nmodel: {arch: mobilenet_v2, num_classes: 4}\n");
  config::QuantConfig q = config::load_config(path).quant;
  REQUIRE(q.rules.size() >= 2);
  q.rules[1].input.learned = true;  // LSQ activation steps on the int8 layers, EMA observers elsewhere
  const torch::Device cpu(torch::kCPU);
  torch::manual_seed(11);
  auto net = model::create_model(tiny_model());
  quant::attach_quantizers(*net, q, cpu);
  auto shadow = model::create_model(tiny_model());
  quant::attach_quantizers(*shadow, q, cpu);
  train::ModelEma ema(shadow, *net, 0.9);  // made before the first batch, as the trainer does
  net->train();
  torch::Tensor x = torch::randn({8, 3, 16, 16});
  net->forward(x);  // the first batch initialises every range and LSQ step
  ema.sync_quantizers(*net);
  ema.update(*net);
  int ranges = 0, steps = 0;
  auto live = model::state_dict(*net), avg = model::state_dict(ema.shadow());
  for (const auto& [k, t] : live) {
    if (!train::is_quantizer_state(*net, k)) continue;
    INFO(k);
    const bool is_step = k.size() > 5 && k.substr(k.size() - 5) == ".step";
    ranges += k.size() > 6 && k.substr(k.size() - 6) == ".range";
    steps += is_step;
    if (!is_step) {
      CHECK(torch::equal(avg.at(k), t));  // ranges and flags: copies, none of the placeholders (0) left
      continue;
    }
    // Learned steps: 0.9 s + 0.1 s of the synced value (not 0.9 * 1 + 0.1 s of the placeholder 1).
    CHECK(torch::allclose(avg.at(k), t, 1e-6, 0));
    CHECK_FALSE(torch::allclose(avg.at(k), 0.9 + 0.1 * t, 1e-3, 0));
  }
  CHECK(ranges > 0);
  CHECK(steps > 0);
  // Later: ranges follow the live model, learned steps are averaged like weights.
  net->train();
  net->forward(3.0 * x);
  std::string step_name;
  for (const auto& [k, t] : live)
    if (train::is_quantizer_state(*net, k) && k.size() > 5 && k.substr(k.size() - 5) == ".step") step_name = k;
  torch::Tensor step_before = model::state_dict(ema.shadow()).at(step_name).clone();
  {
    torch::NoGradGuard g;
    net->named_parameters()[step_name].add_(1.0);
  }
  ema.update(*net);
  live = model::state_dict(*net);
  avg = model::state_dict(ema.shadow());
  for (const auto& [k, t] : live)
    if (train::is_quantizer_state(*net, k) && k.size() > 6 && k.substr(k.size() - 6) == ".range") {
      INFO(k);
      CHECK(torch::equal(avg.at(k), t));
    }
  CHECK(torch::allclose(avg.at(step_name), 0.9 * step_before + 0.1 * live.at(step_name)));
}

namespace {

// A run of prom-train's trainer in this process on synthetic data: 2 epochs of 16 steps.
int64_t host_reads_of_a_run(const test::TempDir& dir, const std::string& name, int log_every, bool qat,
                            int64_t* quantizers) {
  std::string yaml = std::string(qat ? "base: " + test::source("configs/policies/prom.yaml") + "\n" : "") +
                     "run: {name: " + name + ", out_dir: " + dir.path() + ", seed: 3, threads: 1, log_every: " +
                     std::to_string(log_every) + ", device: cpu}\n"
                     "model: {arch: mobilenet_v2, num_classes: 4, width_mult: 0.25, small_input: true, input_size: 16}\n"
                     "data:\n  synthetic: {enabled: true, samples: 256, eval_samples: 64, image_size: 16, classes: 4}\n"
                     "train: {epochs: 2, batch_size: 16}\n"
                     "optim: {name: sgd, lr: 0.05, momentum: 0.9}\n";
  config::Config config = config::load_config(dir.write(name + ".yaml", yaml));
  app::SourceRequest request;
  request.batch_size = config.train.batch_size;
  request.channels_last = config.model.channels_last;
  auto source = app::make_source(config, request);
  train::TrainOptions options;
  options.run_dir = dir.path() + "/" + name;
  *quantizers = 0;
  if (qat) {
    auto m = model::create_model(config.model);
    quant::attach_quantizers(*m, config.quant, torch::Device(torch::kCPU));
    for (const auto& item : m->named_modules("", false))
      *quantizers += dynamic_cast<const model::TensorHook*>(item.value().get()) != nullptr;
  }
  const int64_t before = host_read_count();
  REQUIRE(train::train(config, options, *source, nullptr) == 0);
  return host_read_count() - before;
}

}  // namespace

// N steps may read at most N / log_every + c times. c = 2 here: one read per epoch end (16 steps
// per epoch is not a multiple of log_every 5, so the last steps of each epoch are read before its
// checkpoint). No evaluation data: evaluation reads once per pass, not per step.
TEST_CASE("a float training run reads device values only every log_every steps and at epoch ends", "[train]") {
  test::TempDir dir("host-reads");
  int64_t quantizers = 0;
  const int64_t steps = 32, log_every = 5, epochs = 2;
  const int64_t reads = host_reads_of_a_run(dir, "float", log_every, false, &quantizers);
  INFO("host reads: " << reads << " for " << steps << " steps");
  CHECK(reads <= steps / log_every + epochs);
  CHECK(reads >= steps / log_every);  // the counter does count the metric reads
}

// The same with fake quantizers: each quantizer may read its state once while the first batch
// initialises it (c = epochs + quantizers); after that, a step reads nothing. The quantizers must
// make their reads through core/host_read.h for this to count them.
TEST_CASE("a QAT training run reads device values only every log_every steps, after the first batch", "[train]") {
  test::TempDir dir("host-reads-qat");
  int64_t quantizers = 0;
  const int64_t steps = 32, log_every = 5, epochs = 2;
  const int64_t reads = host_reads_of_a_run(dir, "qat", log_every, true, &quantizers);
  INFO("host reads: " << reads << " for " << steps << " steps, " << quantizers << " quantizers");
  REQUIRE(quantizers > 0);
  CHECK(reads <= steps / log_every + epochs + quantizers);
}
