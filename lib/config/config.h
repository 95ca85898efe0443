// The typed configuration of a prom run. Each section lists its keys once in visit(); see schema.h.
// A YAML file may start with `base: other.yaml` (relative to itself; or a list, applied in order) to
// inherit recipes; then
// command-line overrides (`--set optim.lr=0.1`) apply last, with the same validation.
#pragma once
#include <string>
#include <vector>

#include "config/energy_config.h"
#include "config/quant_config.h"
#include "config/schema.h"

namespace prom::config {

struct RunConfig {
  std::string name = "run";      // a plain folder name: no "/", not "." or ".."
  std::string out_dir = "runs";  // the run directory is out_dir/name
  int64_t seed = 0;
  int threads = 0;               // 0: one per available core
  std::string device = "auto";   // auto | cpu | cuda | cuda:N
  int log_every = 50;            // iterations between metric lines
  int save_every = 0;            // keep a checkpoint every N epochs (0: only last and best)
  template <class V> void visit(V& v) {
    v.field("name", name);
    v.field("out_dir", out_dir);
    v.field("seed", seed, at_least(0));
    v.field("threads", threads, between(0, 1024));
    v.field("device", device);
    v.field("log_every", log_every, at_least(1));
    v.field("save_every", save_every, at_least(0));
  }
};

struct ModelConfig {
  std::string arch = "mobilenet_v2";  // a name in the model registry (lib/model/registry.h)
  int64_t num_classes = 1000;
  double width_mult = 1.0;
  int round_nearest = 8;
  double dropout = 0.2;
  // BatchNorm momentum (PyTorch's convention); 0: the network's own (torchvision: 0.1, MobileNetV3
  // 0.01, MNASNet 0.0003, whose running statistics need ~10,000 steps to settle).
  double bn_momentum = 0.0;
  int64_t input_size = 224;      // used by --describe and the benchmarks
  bool small_input = false;      // for 28-64 px inputs: fewer early downsamplings
  int small_input_stages = 1;    // how many early stride-2 stages become stride 1 (1: stem only)
  bool channels_last = true;     // NHWC activations: up to 2x faster convolutions on CPU
  std::string init;              // weights-only start (safetensors, torchvision names); "" = random
  template <class V> void visit(V& v) {
    v.field("arch", arch, required());
    v.field("num_classes", num_classes, between(1, 1e6).req());
    v.field("width_mult", width_mult, between(0.05, 4.0));
    v.field("round_nearest", round_nearest, between(1, 64));
    v.field("dropout", dropout, between(0, 0.99));
    v.field("bn_momentum", bn_momentum, between(0, 1));
    v.field("input_size", input_size, between(8, 4096));
    v.field("small_input", small_input);
    v.field("small_input_stages", small_input_stages, between(1, 2));
    v.field("channels_last", channels_last);
    v.field("init", init);
  }
};

struct TrainTransformConfig {
  int64_t crop = 224;
  double scale_min = 0.08, scale_max = 1.0;
  double ratio_min = 3.0 / 4.0, ratio_max = 4.0 / 3.0;
  double hflip = 0.5;  // probability
  template <class V> void visit(V& v) {
    v.field("crop", crop, between(1, 4096));
    v.field("scale_min", scale_min, between(0.001, 1));
    v.field("scale_max", scale_max, between(0.001, 1));
    v.field("ratio_min", ratio_min, between(0.01, 100));
    v.field("ratio_max", ratio_max, between(0.01, 100));
    v.field("hflip", hflip, between(0, 1));
  }
};

struct EvalTransformConfig {
  int64_t resize = 256;  // shorter side, with antialiasing
  int64_t crop = 224;    // center crop
  template <class V> void visit(V& v) {
    v.field("resize", resize, between(1, 8192));
    v.field("crop", crop, between(1, 4096));
  }
};

// Random but learnable in-memory images (lib/data/tensor_source.h): prom-train, prom-eval, the
// benchmarks and the tests run without an image dataset. A pure function of run.seed.
struct SyntheticConfig {
  bool enabled = false;
  int64_t samples = 1024;       // training samples
  int64_t eval_samples = 256;   // evaluation samples
  int64_t image_size = 32;      // square, 3 channels
  int64_t classes = 10;         // must equal model.num_classes
  double noise = 1.0;           // std of the per-sample noise around each class prototype
  template <class V> void visit(V& v) {
    v.field("enabled", enabled);
    v.field("samples", samples, between(1, 1e8));
    v.field("eval_samples", eval_samples, between(1, 1e8));
    v.field("image_size", image_size, between(4, 1024));
    v.field("classes", classes, between(1, 1e6));
    v.field("noise", noise, at_least(0));
  }
};

struct DataConfig {
  std::string root;                 // dataset root, holding train_dir and val_dir
  std::string train_dir = "train";
  std::string val_dir = "val";
  std::string val_ground_truth;     // flat ImageNet val: the official ground-truth file ("" = class folders)
  std::string val_synsets;          // flat ImageNet val: the synset mapping (one wnid per line)
  int workers = 0;                  // decode threads; 0 = one per available core
  int prefetch_batches = 4;         // bounded queue of ready batches
  std::string bad_files = "skip";   // what a corrupt image does: skip (logged, counted) or fail
  double max_bad_fraction = 0.01;   // skip aborts the epoch when more than this fraction fails
  std::vector<double> mean = {0.485, 0.456, 0.406};
  std::vector<double> std = {0.229, 0.224, 0.225};
  TrainTransformConfig train_transform;
  EvalTransformConfig eval_transform;
  SyntheticConfig synthetic;
  template <class V> void visit(V& v) {
    v.field("root", root);
    v.field("train_dir", train_dir);
    v.field("val_dir", val_dir);
    v.field("val_ground_truth", val_ground_truth);
    v.field("val_synsets", val_synsets);
    v.field("workers", workers, between(0, 256));
    v.field("prefetch_batches", prefetch_batches, between(1, 1024));
    v.field("bad_files", bad_files, one_of({"skip", "fail"}));
    v.field("max_bad_fraction", max_bad_fraction, between(0, 1));
    v.field("mean", mean);
    v.field("std", std, above(0));
    v.section("train_transform", train_transform);
    v.section("eval_transform", eval_transform);
    v.section("synthetic", synthetic);
  }
};

struct EmaConfig {
  bool enabled = false;
  double decay = 0.9999;
  int every = 1;  // iterations between EMA updates
  // Epochs during which the shadow copies the model instead of averaging it (torchvision's reference
  // resets its EMA during lr warm-up). QAT from float: set it to quant.freeze_bn_after, or the
  // average mixes float weights and moving BatchNorm into the exported model's weights.
  int start_epoch = 0;
  template <class V> void visit(V& v) {
    v.field("enabled", enabled);
    v.field("decay", decay, between(0, 1));
    v.field("every", every, at_least(1));
    v.field("start_epoch", start_epoch, at_least(0));
  }
};

struct DistillConfig {
  std::string teacher;  // checkpoint or weights file; "" = no distillation
  double temperature = 4.0;
  double alpha = 0.5;   // weight of the KL term; (1 - alpha) weighs the label loss
  template <class V> void visit(V& v) {
    v.field("teacher", teacher);
    v.field("temperature", temperature, above(0));
    v.field("alpha", alpha, between(0, 1));
  }
};

// Test hooks: make failures and interruptions reproducible in tests. Off (0) in every real recipe.
struct TestHooksConfig {
  int64_t nan_loss_at_iteration = 0;  // replace the loss by NaN at this global iteration (1-based)
  int step_sleep_ms = 0;              // sleep after each step, so a test can signal mid-epoch
  bool param_checksum = false;        // step metrics list every rank's checksum of parameters + buffers
  template <class V> void visit(V& v) {
    v.field("nan_loss_at_iteration", nan_loss_at_iteration, at_least(0));
    v.field("step_sleep_ms", step_sleep_ms, between(0, 60000));
    v.field("param_checksum", param_checksum);
  }
};

struct TrainConfig {
  int epochs = 1;
  int64_t batch_size = 256;  // global batch, split across ranks
  double label_smoothing = 0.0;
  double grad_clip_norm = 0.0;  // 0: off
  int eval_every = 1;           // epochs
  bool freeze_bn = false;       // BatchNorm normalizes with (and keeps) its running statistics
  // Mixed precision: the model's float compute under autocast in bf16 (CPU or CUDA) or fp16 (CUDA
  // only, with dynamic loss scaling); fake quantizers stay fp32. lib/core/autocast.h.
  std::string amp = "off";      // off | bf16 | fp16
  EmaConfig ema;
  DistillConfig distill;
  TestHooksConfig test_hooks;
  template <class V> void visit(V& v) {
    v.field("epochs", epochs, between(1, 100000));
    v.field("batch_size", batch_size, between(1, 1 << 20));
    v.field("label_smoothing", label_smoothing, between(0, 1));
    v.field("grad_clip_norm", grad_clip_norm, at_least(0));
    v.field("eval_every", eval_every, at_least(1));
    v.field("freeze_bn", freeze_bn);
    v.field("amp", amp, one_of({"off", "bf16", "fp16"}));
    v.section("ema", ema);
    v.section("distill", distill);
    v.section("test_hooks", test_hooks);
  }
};

struct OptimConfig {
  std::string name = "sgd";  // sgd | adamw
  double lr = 0.1;
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 0.0;
  bool no_decay_bn_bias = true;  // exclude BN parameters and biases from weight decay
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  template <class V> void visit(V& v) {
    v.field("name", name, one_of({"sgd", "adamw"}));
    v.field("lr", lr, above(0));
    v.field("momentum", momentum, between(0, 1));
    v.field("nesterov", nesterov);
    v.field("weight_decay", weight_decay, at_least(0));
    v.field("no_decay_bn_bias", no_decay_bn_bias);
    v.field("beta1", beta1, between(0, 1));
    v.field("beta2", beta2, between(0, 1));
    v.field("eps", eps, above(0));
  }
};

// Learning rate per iteration: linear warm-up, then the named decay.
struct ScheduleConfig {
  std::string name = "cosine";  // constant | cosine | step | exponential
  double warmup_epochs = 0;
  double warmup_start_factor = 0.01;
  double gamma = 0.1;           // step: factor per step; exponential: factor per epoch
  int step_epochs = 30;         // step: epochs between steps
  double min_lr = 0.0;          // cosine: floor
  template <class V> void visit(V& v) {
    v.field("name", name, one_of({"constant", "cosine", "step", "exponential"}));
    v.field("warmup_epochs", warmup_epochs, at_least(0));
    v.field("warmup_start_factor", warmup_start_factor, between(0, 1));
    v.field("gamma", gamma, above(0));
    v.field("step_epochs", step_epochs, at_least(1));
    v.field("min_lr", min_lr, at_least(0));
  }
};

// Data-parallel training (lib/distributed): one process per device, rank and world size from torchrun's or
// SLURM's environment variables; without them the run is a single process and these keys are unused.
struct DistConfig {
  std::string backend = "auto";  // auto (NCCL on CUDA, Gloo on CPU) | gloo | nccl
  double timeout_s = 300;        // a collective or the rendezvous waiting longer fails every rank
  double bucket_mb = 25;         // gradients are all-reduced in buckets of about this size
  bool overlap = true;           // start a bucket's all-reduce during backward once its gradients are ready
  template <class V> void visit(V& v) {
    v.field("backend", backend, one_of({"auto", "gloo", "nccl"}));
    v.field("timeout_s", timeout_s, between(0.1, 86400));
    v.field("bucket_mb", bucket_mb, between(0.001, 4096));
    v.field("overlap", overlap);
  }
};

struct Config {
  RunConfig run;
  ModelConfig model;
  DataConfig data;
  TrainConfig train;
  OptimConfig optim;
  ScheduleConfig schedule;
  QuantConfig quant;
  EnergyConfig energy;
  DistConfig dist;
  std::string source;  // the file it was loaded from (not a key)
  template <class V> void visit(V& v) {
    v.section("run", run);
    v.section("model", model);
    v.section("data", data);
    v.section("train", train);
    v.section("optim", optim);
    v.section("schedule", schedule);
    v.section("quant", quant);
    v.section("energy", energy);
    v.section("dist", dist);
  }
};

// Loads `path` (following `base:` includes), applies `overrides` ("a.b=value"), checks required keys
// and cross-field rules. Throws ConfigError ("file:line: key: problem").
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});

// Applies overrides to a config that is already loaded (same validation).
void apply_overrides(Config& config, const std::vector<std::string>& overrides);

// The fully resolved config as YAML.
std::string to_yaml(Config& config);

}  // namespace prom::config
