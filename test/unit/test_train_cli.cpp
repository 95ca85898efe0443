// The trainer as users run it: real prom-train and prom-eval processes on tiny synthetic data and a
// tiny MobileNetV2 (width 0.25, 16 px). Resume must be exact, signals must leave a resumable
// checkpoint, a NaN loss must stop the run.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "support/catch.h"
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "support/command.h"
#include "train/checkpoint.h"

extern char** environ;

using namespace prom::test;
using Catch::Matchers::Contains;
using json = nlohmann::json;

namespace {

// 256 samples in batches of 16: 16 iterations per epoch, about 0.1 s per epoch on one thread.
std::string tiny_config(const TempDir& dir, const std::string& extra = "") {
  return dir.write("tiny.yaml",
                   "run: {name: tiny, out_dir: " + dir.path() + "/runs, seed: 3, threads: 1, log_every: 1}\n"
                   "model: {arch: mobilenet_v2, num_classes: 4, width_mult: 0.25, small_input: true, input_size: 16}\n"
                   "data:\n"
                   "  synthetic: {enabled: true, samples: 256, eval_samples: 64, image_size: 16, classes: 4}\n"
                   "train: {epochs: 2, batch_size: 16, label_smoothing: 0.1}\n"
                   "optim: {name: sgd, lr: 0.05, momentum: 0.9, nesterov: true, weight_decay: 0.0001}\n"
                   "schedule: {name: cosine, warmup_epochs: 0.5}\n" +
                       extra);
}

std::vector<json> records(const std::string& run_dir, const std::string& kind) {
  std::ifstream in(run_dir + "/metrics.jsonl");
  std::vector<json> out;
  for (std::string line; std::getline(in, line);) {
    json j = json::parse(line);
    if (j["kind"] == kind) out.push_back(j);
  }
  return out;
}

// The per-epoch metrics that must not depend on where a run was interrupted (not the timings).
json deterministic(const json& epoch) {
  json out;
  for (const char* k : {"epoch", "iteration", "lr", "train_loss", "train_top1", "eval_loss", "eval_top1", "eval_top5",
                        "ema_eval_top1", "ema_eval_top5"})
    if (epoch.contains(k)) out[k] = epoch[k];
  return out;
}

std::string train_cmd(const std::string& args) { return bin("prom-train") + " " + args; }

}  // namespace

TEST_CASE("resume after epoch 1 reaches the metrics of an uninterrupted run", "[train_cli]") {
  TempDir dir("resume");
  // Step decay does not depend on train.epochs, so a 1-epoch run may be extended to 2 epochs.
  auto cfg = tiny_config(dir);
  const std::string common = " --config " + cfg + " --set schedule.name=step --set schedule.step_epochs=1" +
                             " --set schedule.gamma=0.5 --set train.ema.enabled=true --set train.ema.decay=0.9";
  auto full = run_command(train_cmd(common + " --set run.name=full"));
  REQUIRE(full.exit_code == 0);
  auto part = run_command(train_cmd(common + " --set run.name=part --set train.epochs=1"));
  REQUIRE(part.exit_code == 0);
  const std::string part_dir = dir.path() + "/runs/part";
  auto ckpt = prom::train::load_checkpoint(part_dir + "/last.safetensors");
  CHECK(ckpt.progress.epoch == 1);
  CHECK(ckpt.progress.iteration == 16);
  auto resumed = run_command(train_cmd("--resume " + part_dir + " --set train.epochs=2"));
  INFO(resumed.output);
  REQUIRE(resumed.exit_code == 0);
  CHECK_THAT(resumed.output, Contains("resumed from"));
  auto a = records(dir.path() + "/runs/full", "epoch"), b = records(part_dir, "epoch");
  REQUIRE(a.size() == 2);
  REQUIRE(b.size() == 2);
  CHECK(deterministic(a[1]).dump() == deterministic(b[1]).dump());
  CHECK(a[1]["train_loss"] != a[0]["train_loss"]);  // epoch 2 did train
  // The final weights are bit-identical too.
  auto wa = prom::train::load_checkpoint(dir.path() + "/runs/full/last.safetensors").model;
  auto wb = prom::train::load_checkpoint(part_dir + "/last.safetensors").model;
  for (const auto& [k, t] : wa) {
    INFO(k);
    CHECK(torch::equal(t, wb.at(k)));
  }
  // Every run leaves its resolved config, its log and a best checkpoint.
  for (const char* f : {"config.yaml", "train.log", "best.safetensors", "metrics.jsonl"})
    CHECK(std::filesystem::exists(part_dir + "/" + f));
  // Starting over in a run directory that holds a run is refused.
  auto again = run_command(train_cmd(common + " --set run.name=part"));
  CHECK(again.exit_code == 2);
  CHECK_THAT(again.output, Contains("already holds a run; continue it with --resume"));
}

TEST_CASE("SIGTERM mid-epoch: exit 143, a resumable checkpoint, and the same final metrics", "[train_cli]") {
  TempDir dir("signal");
  auto cfg = tiny_config(dir, "");
  const std::string common = " --set optim.name=adamw --set optim.lr=0.002 --set optim.weight_decay=0.05";
  auto ref = run_command(train_cmd("--config " + cfg + common + " --set run.name=ref"));
  REQUIRE(ref.exit_code == 0);

  // A real process, slowed to ~0.1 s per step by a test hook, signalled once it is inside epoch 1.
  const std::string run_dir = dir.path() + "/runs/sig";
  std::vector<std::string> args = {bin("prom-train"), "--config", cfg, "--set", "optim.name=adamw",
                                   "--set", "optim.lr=0.002", "--set", "optim.weight_decay=0.05",
                                   "--set", "run.name=sig", "--set", "train.test_hooks.step_sleep_ms=100"};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  const std::string log = dir.file("sig.log");
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
  pid_t pid = 0;
  REQUIRE(posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ) == 0);
  posix_spawn_file_actions_destroy(&actions);
  bool signalled = false;
  for (int i = 0; i < 300 && !signalled; ++i) {  // up to 30 s for start-up on a busy machine
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (!std::filesystem::exists(run_dir + "/metrics.jsonl")) continue;
    auto steps = records(run_dir, "step");
    if (!steps.empty() && steps.back()["epoch"] == 1 && steps.back()["batch"].get<int>() >= 2) {
      ::kill(pid, SIGTERM);
      signalled = true;
    }
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  std::ifstream in(log);
  std::string output((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  INFO(output);
  REQUIRE(signalled);
  REQUIRE(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 143);
  CHECK_THAT(output, Contains("SIGTERM received in epoch 1"));
  auto ckpt = prom::train::load_checkpoint(run_dir + "/last.safetensors");
  CHECK(ckpt.progress.epoch == 0);           // stopped inside epoch 1 ...
  CHECK(ckpt.progress.batches_done > 0);     // ... after some of its batches
  CHECK(ckpt.progress.batches_done < 16);
  CHECK(ckpt.progress.iteration == ckpt.progress.batches_done);
  CHECK(records(run_dir, "stop").size() == 1);

  // The test hook only sleeps; turning it off does not change the arithmetic.
  auto resumed = run_command(train_cmd("--resume " + run_dir + " --set train.test_hooks.step_sleep_ms=0"));
  INFO(resumed.output);
  REQUIRE(resumed.exit_code == 0);
  auto a = records(dir.path() + "/runs/ref", "epoch"), b = records(run_dir, "epoch");
  REQUIRE(a.size() == 2);
  REQUIRE(b.size() == 2);
  for (int e = 0; e < 2; ++e) CHECK(deterministic(a[e]).dump() == deterministic(b[e]).dump());
}

TEST_CASE("a NaN loss stops the run with exit 1 and keeps the last good checkpoint", "[train_cli]") {
  TempDir dir("nan");
  auto cfg = tiny_config(dir);
  // Iteration 20 is in epoch 2: epoch 1's checkpoint must survive.
  auto r = run_command(train_cmd("--config " + cfg + " --set train.test_hooks.nan_loss_at_iteration=20"));
  INFO(r.output);
  CHECK(r.exit_code == 1);
  CHECK_THAT(r.output, Contains("prom-train: error: iteration 20 (epoch 2): the loss is NaN"));
  CHECK_THAT(r.output, Contains("the last good checkpoint is"));
  auto ckpt = prom::train::load_checkpoint(dir.path() + "/runs/tiny/last.safetensors");
  CHECK(ckpt.progress.epoch == 1);
  CHECK(ckpt.progress.iteration == 16);
  for (const auto& [k, t] : ckpt.model) {
    INFO(k);
    if (t.is_floating_point()) CHECK(torch::isfinite(t).all().item<bool>());
  }
  // A real divergence (no hook) is caught the same way.
  auto diverge = run_command(train_cmd("--config " + cfg + " --set run.name=huge --set optim.lr=1e30"));
  CHECK(diverge.exit_code == 1);
  CHECK_THAT(diverge.output, Contains("the loss is"));
}

TEST_CASE("prom-eval reports a checkpoint's accuracy and refuses other classes", "[train_cli]") {
  TempDir dir("eval");
  auto cfg = tiny_config(dir, "");
  auto r = run_command(train_cmd("--config " + cfg + " --set train.epochs=1"));
  REQUIRE(r.exit_code == 0);
  const std::string ckpt = dir.path() + "/runs/tiny/last.safetensors";
  auto e = run_command(bin("prom-eval") + " --checkpoint " + ckpt + " --json");
  INFO(e.output);
  REQUIRE(e.exit_code == 0);
  json out = json::parse(e.output.substr(e.output.find('{')));
  auto epochs = records(dir.path() + "/runs/tiny", "epoch");
  REQUIRE(epochs.size() == 1);
  CHECK(out["top1"] == epochs[0]["eval_top1"]);  // the same model on the same data
  CHECK(out["top5"] == epochs[0]["eval_top5"]);
  CHECK(out["samples"] == 64);
  REQUIRE(out["per_class"].size() == 4);
  int64_t correct = 0;
  for (const auto& c : out["per_class"]) {
    CHECK(c["total"] == 16);
    correct += c["correct"].get<int64_t>();
  }
  CHECK(100.0 * correct / 64 == Approx(out["top1"].get<double>()));

  auto text = run_command(bin("prom-eval") + " --checkpoint " + ckpt);
  CHECK(text.exit_code == 0);
  CHECK_THAT(text.output, Contains("class_003"));

  auto bad = run_command(bin("prom-eval") + " --checkpoint " + ckpt +
                         " --set data.synthetic.classes=3 --set model.num_classes=3");
  CHECK(bad.exit_code == 1);
  CHECK_THAT(bad.output, Contains("prom-eval: error: " + ckpt +
                                  ": class list does not match the data (the checkpoint has 4 classes, the data 3)"));
}

// The tiny fixture with settings under which it learns within a few epochs (512 samples, less
// noise, AdamW): ~97% evaluation top-1 after 5 epochs.
const std::string kLearns = " --set data.synthetic.samples=512 --set data.synthetic.noise=0.5 --set optim.name=adamw"
                            " --set optim.lr=0.005";

TEST_CASE("train.amp: an unknown value and fp16 on a CPU are one-line config errors that write nothing",
          "[train_cli]") {
  TempDir dir("amp-errors");
  auto cfg = tiny_config(dir);
  auto bad = run_command(train_cmd("--config " + cfg + " --set train.amp=fp8"));
  CHECK(bad.exit_code == 2);
  CHECK_THAT(bad.output, Contains("train.amp: 'fp8' is not one of: off, bf16, fp16"));
  auto fp16 = run_command(train_cmd("--config " + cfg + " --set train.amp=fp16 --set run.device=cpu"));
  INFO(fp16.output);
  CHECK(fp16.exit_code == 2);
  CHECK_THAT(fp16.output, Contains("prom-train: error: " + cfg +
                                   ": train.amp: fp16 needs a CUDA device, but run.device resolves to cpu"));
  CHECK(!std::filesystem::exists(dir.path() + "/runs/tiny"));
}

// bf16 keeps 8 bits of mantissa, so its loss curve leaves fp32's and follows its own path. What
// must hold: the loss falls (by > 0.3 from the first epoch's mean, on a fixture that starts near
// ln 4 = 1.39) and the last epoch's mean loss is within 0.25 of fp32's. 0.25 is the spread between
// fp32 runs of different seeds on this fixture (0.79-0.89 at epoch 3, PyTorch 1.13 replica with
// torchvision's MobileNetV2 x0.25; bf16 runs there: 0.79-0.86, one seed 1.29).
TEST_CASE("bf16 autocast on a CPU trains: its loss falls like fp32's", "[train_cli]") {
  TempDir dir("amp-bf16");
  auto cfg = tiny_config(dir, "");
  const std::string common = " --config " + cfg + kLearns + " --set train.epochs=3 --set run.device=cpu" +
                             " --set run.log_every=4";
  auto fp32 = run_command(train_cmd(common + " --set run.name=fp32"));
  REQUIRE(fp32.exit_code == 0);
  auto bf16 = run_command(train_cmd(common + " --set run.name=bf16 --set train.amp=bf16"));
  INFO(bf16.output);
  if (bf16.output.find("not implemented for 'BFloat16'") != std::string::npos)
    FAIL("LibTorch 1.13 has no bf16 CPU kernel for ReLU6's backward (hardtanh_backward): lib/model's ReLU6 needs "
         "its own backward (where(0 < y < 6, grad, 0)) for bf16 autocast to train on a CPU");
  REQUIRE(bf16.exit_code == 0);
  CHECK_THAT(bf16.output, Contains("mixed precision: bf16 autocast"));
  auto a = records(dir.path() + "/runs/fp32", "epoch"), b = records(dir.path() + "/runs/bf16", "epoch");
  REQUIRE(a.size() == 3);
  REQUIRE(b.size() == 3);
  auto sa = records(dir.path() + "/runs/fp32", "step"), sb = records(dir.path() + "/runs/bf16", "step");
  REQUIRE(sa.size() == sb.size());
  const double first = sb.front()["loss"].get<double>(), last = b[2]["train_loss"].get<double>();
  WARN("train loss fp32 " << a[0]["train_loss"] << " -> " << a[2]["train_loss"] << ", bf16 " << b[0]["train_loss"]
                          << " -> " << b[2]["train_loss"] << "; eval top-1 fp32 " << a[2]["eval_top1"] << ", bf16 "
                          << b[2]["eval_top1"]);
  CHECK(last < b[0]["train_loss"].get<double>() - 0.3);  // it learns
  CHECK(last < first);
  CHECK(std::abs(a[2]["train_loss"].get<double>() - last) <= 0.25);
  CHECK(a[2]["train_loss"] != b[2]["train_loss"]);  // bf16 did compute differently
}

// W8A8 QAT from a trained float model with an EMA of decay 0.995 over 96 steps at a small
// learning rate: the EMA weights stay close to the live ones, so their evaluations agree -- unless
// the EMA's quantizer state is wrong. Averaged from the placeholders of before the first batch, its
// ranges would be 1 - 0.995^96 = 38% of the live ones: the live model of this fixture with its
// ranges scaled by 0.38 scores 55% instead of 97%. 4096 evaluation images: 0.5 points are 20 images
// (with 1024, a few borderline images moved by float rounding order decided the check).
TEST_CASE("EMA of a QAT run: a copy of the model before train.ema.start_epoch, within 0.5 points of it after; "
          "prom-export --ema exports it",
          "[train_cli]") {
  TempDir dir("ema-qat");
  auto cfg = tiny_config(dir, "");
  const std::string eval = kLearns + " --set data.synthetic.eval_samples=4096 --set run.log_every=8";
  auto fp = run_command(train_cmd("--config " + cfg + eval + " --set run.name=float --set train.epochs=5"));
  REQUIRE(fp.exit_code == 0);
  const std::string float_ckpt = dir.path() + "/runs/float/last.safetensors";
  auto qat_cfg = dir.write("qat.yaml", "base: [" + cfg + ", " + source("configs/policies/w8a8.yaml") + "]\n");
  auto qat = run_command(train_cmd("--config " + qat_cfg + eval + " --set run.name=qat --set train.epochs=3" +
                                   " --set model.init=" + float_ckpt + " --set optim.lr=0.00001" +
                                   " --set schedule.name=constant --set schedule.warmup_epochs=0" +
                                   " --set train.ema.enabled=true --set train.ema.decay=0.995" +
                                   " --set train.ema.start_epoch=1"));
  INFO(qat.output);
  REQUIRE(qat.exit_code == 0);
  auto epochs = records(dir.path() + "/runs/qat", "epoch");
  REQUIRE(epochs.size() == 3);
  // Epoch 1 ends with the shadow a copy of the model: the same logits, the same accuracy.
  CHECK(epochs.front()["ema_eval_top1"].get<double>() == epochs.front()["eval_top1"].get<double>());
  const double live = epochs.back()["eval_top1"].get<double>(), ema = epochs.back()["ema_eval_top1"].get<double>();
  WARN("QAT eval top-1: live " << live << "%, EMA " << ema << "%");
  // A trained model (4 classes, a guess is 25%): the comparison is not between two random guesses.
  // 88.9% with Debian 13's LibTorch 2.6, 97.3% with LibTorch 1.13 (float rounding order differs).
  CHECK(live > 80.0);
  CHECK(std::abs(live - ema) <= 0.5);

  const std::string ckpt = dir.path() + "/runs/qat/last.safetensors";
  auto live_export = run_command(bin("prom-export") + " --checkpoint " + ckpt + " --out " + dir.file("live.prom"));
  INFO(live_export.output);
  REQUIRE(live_export.exit_code == 0);
  auto ema_export = run_command(bin("prom-export") + " --checkpoint " + ckpt + " --ema --out " + dir.file("ema.prom"));
  INFO(ema_export.output);
  REQUIRE(ema_export.exit_code == 0);
  std::ifstream a(dir.file("live.prom"), std::ios::binary), b(dir.file("ema.prom"), std::ios::binary);
  std::string la((std::istreambuf_iterator<char>(a)), {}), lb((std::istreambuf_iterator<char>(b)), {});
  CHECK(!lb.empty());
  CHECK(la != lb);  // the EMA's weights, not the live ones
  auto none = run_command(bin("prom-export") + " --checkpoint " + float_ckpt + " --ema --out " + dir.file("x.prom"));
  CHECK(none.exit_code == 2);
  CHECK_THAT(none.output, Contains("--ema: the file holds no EMA weights"));
  CHECK(!std::filesystem::exists(dir.file("x.prom")));

  // Fine-tuning from the QAT checkpoint (model.init): the quantizer state loads with the weights.
  // With BN and observers frozen and a learning rate too small to move a float32 weight, the run
  // evaluates exactly as the checkpoint did (observers started afresh would see other ranges).
  auto tuned = run_command(train_cmd("--config " + qat_cfg + eval + " --set run.name=tuned --set train.epochs=1" +
                                     " --set model.init=" + ckpt + " --set optim.lr=1e-30" +
                                     " --set quant.freeze_observers_after=0 --set quant.freeze_bn_after=0"));
  INFO(tuned.output);
  REQUIRE(tuned.exit_code == 0);
  CHECK_THAT(tuned.output, Contains("initial weights and quantizer state: " + ckpt));
  auto tuned_epochs = records(dir.path() + "/runs/tuned", "epoch");
  REQUIRE(tuned_epochs.size() == 1);
  CHECK(tuned_epochs.back()["eval_top1"].get<double>() == live);
}
