// The CUDA path, for scripts/gpu_check.sh (ctest -R cuda) on a machine with a GPU: fake quant on
// CUDA equals the CPU kernels, float/QAT/AMP training runs on CUDA, a checkpoint crosses between
// CUDA and CPU unchanged, a step reads nothing back from the device, several CUDA ranks pick NCCL.
// Without a CUDA device the group exits 77 (CTest: skipped) with a SKIPPED line saying why
// (unit/main.cpp), so a CPU-only CI run shows that these tests did not run.
#include "support/catch.h"
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "app/sources.h"
#include "config/config.h"
#include "core/host_read.h"
#include "distributed/backend.h"
#include "model/registry.h"
#include "model/weights.h"
#include "quant/policy.h"
#include "quant/quantizers.h"
#include "support/command.h"
#include "train/checkpoint.h"
#include "train/trainer.h"
#if PROM_TEST_WITH_DATA
#include "unit/data_fixtures.h"
#endif

using namespace prom;

namespace {

const torch::Device kCuda(torch::kCUDA, 0);

std::string run_yaml(const test::TempDir& dir, const std::string& name, bool qat, const std::string& amp,
                     int64_t epochs, int64_t log_every) {
  return std::string(qat ? "base: " + test::source("configs/policies/prom.yaml") + "\n" : "") +
         "run: {name: " + name + ", out_dir: " + dir.path() + ", seed: 5, threads: 2, log_every: " +
         std::to_string(log_every) + ", device: cuda}\n"
         "model: {arch: mobilenet_v2, num_classes: 4, width_mult: 0.25, small_input: true, input_size: 16}\n"
         "data:\n  synthetic: {enabled: true, samples: 256, eval_samples: 64, image_size: 16, classes: 4}\n"
         "train: {epochs: " + std::to_string(epochs) + ", batch_size: 16, amp: " + amp + "}\n"
         "optim: {name: sgd, lr: 0.05, momentum: 0.9}\n";
}

// Trains on synthetic data on CUDA; returns the per-epoch train losses from metrics.jsonl.
std::vector<double> train_on_cuda(const test::TempDir& dir, const std::string& name, bool qat, const std::string& amp,
                                  int64_t epochs = 3, int64_t log_every = 5) {
  config::Config config = config::load_config(dir.write(name + ".yaml", run_yaml(dir, name, qat, amp, epochs, log_every)));
  app::SourceRequest request;
  request.batch_size = config.train.batch_size;
  request.channels_last = config.model.channels_last;
  request.pin_memory = true;
  auto source = app::make_source(config, request);
  train::TrainOptions options;
  options.run_dir = dir.path() + "/" + name;
  REQUIRE(train::train(config, options, *source, nullptr) == 0);
  std::vector<double> losses;
  std::ifstream metrics(options.run_dir + "/metrics.jsonl");
  for (std::string line; std::getline(metrics, line);) {
    auto record = nlohmann::json::parse(line);
    if (record.value("kind", "") == "epoch") losses.push_back(record["train_loss"].get<double>());
  }
  return losses;
}

}  // namespace

// What the exported model stores, the integer codes, and the straight-through masks are equal on
// both devices. The scales are reductions (mean |W|, the observer's EMA of max |x|) that CUDA rounds
// differently (another summation order, fused multiply-adds): on the first GPU run (H200, torch
// 2.11) they differed in the last bit (0.054684978 vs 0.0546849817), so scales and the values
// codes * scale are compared to within 1e-6 relative, a few float32 ulps.
TEST_CASE("CUDA fake quant matches the CPU kernels: equal codes and STE masks, scales within float rounding",
          "[.][cuda]") {
  torch::manual_seed(11);
  auto w = torch::randn({16, 8, 3, 3});
  auto x = torch::randn({4, 8, 6, 6}) * 3;
  constexpr double kRelTolerance = 1e-6;
  auto check_pair = [&](quant::WeightQuantizer& cpu, quant::WeightQuantizer& gpu) {
    const quant::QuantizedWeight qc = cpu.quantize(w), qg = gpu.quantize(w.to(kCuda));
    CHECK(torch::equal(qc.codes, qg.codes.cpu()));
    CHECK(torch::allclose(qc.scale, qg.scale.cpu(), kRelTolerance, 0));
    auto wc = w.clone().set_requires_grad(true);
    auto wg = w.to(kCuda).set_requires_grad(true);
    auto yc = cpu.forward(wc), yg = gpu.forward(wg);
    CHECK(torch::allclose(yc, yg.cpu(), kRelTolerance, 0));
    (yc * yc).sum().backward();
    (yg * yg).sum().backward();
    CHECK(torch::equal(wc.grad().eq(0), wg.grad().cpu().eq(0)));  // the STE: the same mask
    CHECK(torch::allclose(wc.grad(), wg.grad().cpu(), kRelTolerance, 0));
  };
  for (bool per_channel : {false, true}) {
    INFO("per_channel " << per_channel);
    quant::TernaryWeightImpl tc(false, per_channel), tg(false, per_channel);
    tg.to(kCuda);
    check_pair(tc, tg);
    quant::Int8WeightImpl ic(per_channel, false, 16), ig(per_channel, false, 16);
    ig.to(kCuda);
    check_pair(ic, ig);
  }
  for (bool is_unsigned : {true, false}) {
    INFO("unsigned " << is_unsigned);
    quant::ActivationQuantImpl ac(is_unsigned, false, 0.1), ag(is_unsigned, false, 0.1);
    ag.to(kCuda);
    ac.train();
    ag.train();
    for (int step = 0; step < 3; ++step) {  // the observer's running range moves alike
      INFO("step " << step);
      auto xc = (x * (step + 1)).set_requires_grad(true);
      auto xg = (x * (step + 1)).to(kCuda).set_requires_grad(true);
      auto yc = ac.forward(xc), yg = ag.forward(xg);
      CHECK(std::abs(ac.scale() - ag.scale()) <= kRelTolerance * ac.scale());
      CHECK(torch::equal(torch::round(yc / ac.scale()), torch::round(yg.cpu() / ag.scale())));  // the codes
      CHECK(torch::allclose(yc, yg.cpu(), kRelTolerance, 0));
      yc.sum().backward();
      yg.sum().backward();
      CHECK(torch::equal(xc.grad(), xg.grad().cpu()));  // the STE mask, as 0/1 gradients
    }
  }
}

TEST_CASE("float, QAT and AMP training on CUDA: finite losses that fall", "[.][cuda]") {
  test::TempDir dir("cuda-train");
  for (auto [name, qat, amp] : {std::tuple<const char*, bool, const char*>{"float", false, "off"},
                                {"qat", true, "off"},
                                {"bf16", false, "bf16"},
                                {"fp16", false, "fp16"},
                                {"qat-fp16", true, "fp16"}}) {
    INFO(name);
    auto losses = train_on_cuda(dir, name, qat, amp);
    REQUIRE(losses.size() == 3);
    for (double l : losses) CHECK(std::isfinite(l));
    CHECK(losses.back() < losses.front());
  }
}

TEST_CASE("a checkpoint written on CUDA loads on CPU and back onto CUDA unchanged", "[.][cuda]") {
  test::TempDir dir("cuda-ckpt");
  train_on_cuda(dir, "run", true, "off", 1);
  const std::string path = train::last_checkpoint(dir.path() + "/run");
  train::Checkpoint c = train::load_checkpoint(path);
  REQUIRE(!c.model.empty());
  for (const auto& [k, t] : c.model) CHECK(t.device().is_cpu());
  // Into a CPU model, then onto CUDA and back: the same bits.
  config::Config config = config::load_config(dir.path() + "/run.yaml");
  auto m = model::create_model(config.model);
  quant::attach_quantizers(*m, config.quant, torch::Device(torch::kCPU));
  model::load_state_dict(*m, c.model, path);
  m->to(kCuda);
  const auto on_cuda = model::state_dict(*m);
  test::TempDir again("cuda-ckpt-again");
  model::save_weights(*m, again.file("w.safetensors"));
  auto m2 = model::create_model(config.model);
  quant::attach_quantizers(*m2, config.quant, torch::Device(torch::kCPU));
  model::load_weights(*m2, again.file("w.safetensors"));
  for (const auto& [k, t] : model::state_dict(*m2)) {
    INFO(k);
    REQUIRE(c.model.count(k) == 1);
    CHECK(torch::equal(t, c.model.at(k)));
    CHECK(torch::equal(on_cuda.at(k).cpu(), c.model.at(k)));
  }
}

// N steps may read the device at most N / log_every + epochs + quantizers times (each quantizer
// once while the first batch initialises it): the same bound as the CPU test in [train], here where
// a read is a real host sync.
TEST_CASE("a QAT step on CUDA reads nothing back from the device between log_every steps", "[.][cuda]") {
  test::TempDir dir("cuda-host-reads");
  const int64_t steps = 32, log_every = 5, epochs = 2;
  const int64_t before = host_read_count();
  train_on_cuda(dir, "qat", true, "off", epochs, log_every);
  const int64_t reads = host_read_count() - before;
  config::Config config = config::load_config(dir.path() + "/qat.yaml");
  auto m = model::create_model(config.model);
  quant::attach_quantizers(*m, config.quant, torch::Device(torch::kCPU));
  int64_t quantizers = 0;
  for (const auto& item : m->named_modules("", false))
    quantizers += dynamic_cast<const model::TensorHook*>(item.value().get()) != nullptr;
  INFO("host reads: " << reads << " for " << steps << " steps, " << quantizers << " quantizers");
  CHECK(reads <= steps / log_every + epochs + quantizers);
}

TEST_CASE("several CUDA ranks pick NCCL in this build", "[.][cuda]") {
  const auto built = dist::compiled_backends();
  INFO("this build: NCCL " << built.nccl << ", Gloo " << built.gloo);
  REQUIRE(built.nccl);  // the CUDA build links the NCCL its LibTorch was built with
  CHECK(dist::choose_backend("auto", true, 2, built) == "nccl");
}

#if PROM_TEST_WITH_DATA
TEST_CASE("image batches for a CUDA run are decoded into pinned memory", "[.][cuda]") {
  test::TempDir dir("cuda-pinned");
  test::make_image_folder(dir.path(), "train", 2, 4);
  config::Config config = test::small_config(dir.path(), 1);
  app::SourceRequest request;
  request.batch_size = 4;
  request.pin_memory = true;
  auto source = app::make_source(config, request);
  source->start_epoch(0);
  auto batch = source->next();
  REQUIRE(batch.has_value());
  CHECK(batch->images.is_pinned());
  CHECK(batch->labels.is_pinned());
  request.pin_memory = false;
  auto pageable = app::make_source(config, request);
  pageable->start_epoch(0);
  CHECK_FALSE(pageable->next()->images.is_pinned());
}
#endif
