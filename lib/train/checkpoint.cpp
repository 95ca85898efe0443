#include "train/checkpoint.h"

#include <ATen/Context.h>

#include <algorithm>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "io/safetensors.h"
#include "prom/version.h"

namespace prom::train {
namespace {

constexpr const char* kFormat = "prom-checkpoint/1";

nlohmann::json progress_json(const TrainProgress& p) {
  nlohmann::json j = {{"epoch", p.epoch},         {"batches_done", p.batches_done}, {"iteration", p.iteration},
                      {"optimizer_steps", p.optimizer_steps}, {"best_top1", p.best_top1}, {"best_epoch", p.best_epoch},
                      {"loss_sum", p.loss_sum},   {"samples", p.samples},           {"correct", p.correct}};
  if (p.loss_scale > 0) {  // only fp16 runs have a loss scaler
    j["loss_scale"] = p.loss_scale;
    j["loss_scale_growth"] = p.loss_scale_growth;
  }
  return j;
}

TrainProgress progress_from(const nlohmann::json& j) {
  TrainProgress p;
  p.epoch = j.at("epoch").get<int64_t>();
  p.batches_done = j.at("batches_done").get<int64_t>();
  p.iteration = j.at("iteration").get<int64_t>();
  p.optimizer_steps = j.at("optimizer_steps").get<int64_t>();
  p.best_top1 = j.at("best_top1").get<double>();
  p.best_epoch = j.at("best_epoch").get<int64_t>();
  p.loss_sum = j.at("loss_sum").get<double>();
  p.samples = j.at("samples").get<int64_t>();
  p.correct = j.at("correct").get<int64_t>();
  p.loss_scale = j.value("loss_scale", 0.0);
  p.loss_scale_growth = j.value("loss_scale_growth", int64_t{0});
  return p;
}

bool is_model_name(const std::string& name) { return name.find('/') == std::string::npos; }

std::vector<std::string> classes_from(const io::TensorFile& file, const std::string& path) {
  auto it = file.metadata.find("classes");
  if (it == file.metadata.end()) return {};
  try {
    return nlohmann::json::parse(it->second).get<std::vector<std::string>>();
  } catch (const std::exception& e) {
    throw Error(at_path(path, std::string("metadata 'classes' is not a JSON list of names: ") + e.what()));
  }
}

}  // namespace

void save_checkpoint(const std::string& path, const Checkpoint& c) {
  io::TensorFile file;
  for (const auto& [k, t] : c.model) file.tensors[k] = t;
  for (const auto& [k, t] : c.optim) file.tensors[k] = t;
  for (const auto& [k, t] : c.ema) file.tensors["ema/" + k] = t;
  if (c.rng_cpu.defined()) file.tensors["rng/cpu"] = c.rng_cpu.to(torch::kCPU).contiguous();
  if (c.rng_cuda.defined()) file.tensors["rng/cuda"] = c.rng_cuda.to(torch::kCPU).contiguous();
  file.metadata["format"] = kFormat;
  file.metadata["prom"] = c.prom_version.empty() ? PROM_VERSION : c.prom_version;
  file.metadata["state"] = progress_json(c.progress).dump();
  file.metadata["config"] = c.config_yaml;
  file.metadata["classes"] = nlohmann::json(c.classes).dump();
  io::write_safetensors(path, file);
}

Checkpoint load_checkpoint(const std::string& path) {
  io::TensorFile file = io::read_safetensors(path);
  auto meta = [&](const char* key) -> const std::string& {
    auto it = file.metadata.find(key);
    if (it == file.metadata.end())
      throw Error(at_path(path, std::string("not a prom checkpoint (no '") + key + "' in its metadata)"));
    return it->second;
  };
  if (meta("format") != kFormat)
    throw Error(at_path(path, "unsupported checkpoint format '" + meta("format") + "' (expected " + kFormat + ")"));
  Checkpoint c;
  c.prom_version = meta("prom");
  c.config_yaml = meta("config");
  c.classes = classes_from(file, path);
  try {
    c.progress = progress_from(nlohmann::json::parse(meta("state")));
  } catch (const nlohmann::json::exception& e) {
    throw Error(at_path(path, std::string("metadata 'state' is invalid: ") + e.what()));
  }
  for (auto& [k, t] : file.tensors) {
    if (is_model_name(k)) c.model[k] = t;
    else if (k.rfind("optim/", 0) == 0) c.optim[k] = t;
    else if (k.rfind("ema/", 0) == 0) c.ema[k.substr(4)] = t;
    else if (k == "rng/cpu") c.rng_cpu = t;
    else if (k == "rng/cuda") c.rng_cuda = t;
    else throw Error(at_path(path, "unexpected tensor '" + k + "' in a checkpoint"));
  }
  return c;
}

std::map<std::string, torch::Tensor> load_model_tensors(const std::string& path, std::vector<std::string>* classes) {
  io::TensorFile file = io::read_safetensors(path);
  std::map<std::string, torch::Tensor> out;
  for (auto& [k, t] : file.tensors)
    if (is_model_name(k)) out[k] = t;
  if (out.empty()) throw Error(at_path(path, "holds no model tensors"));
  if (classes != nullptr) *classes = classes_from(file, path);
  return out;
}

void check_classes(const std::vector<std::string>& expected, const std::vector<std::string>& actual,
                   const std::string& origin) {
  if (expected.empty() || expected == actual) return;
  std::string detail = "the checkpoint has " + std::to_string(expected.size()) + " classes, the data " +
                       std::to_string(actual.size());
  for (size_t i = 0; i < std::min(expected.size(), actual.size()); ++i)
    if (expected[i] != actual[i]) {
      detail = "class " + std::to_string(i) + " is '" + expected[i] + "' in the checkpoint but '" + actual[i] +
               "' in the data";
      break;
    }
  throw Error(at_path(origin, "class list does not match the data (" + detail + ")"));
}

void capture_rng(Checkpoint& c, const torch::Device& device) {
  c.rng_cpu = at::globalContext().defaultGenerator(torch::Device(torch::kCPU)).get_state();
  if (device.is_cuda()) c.rng_cuda = at::globalContext().defaultGenerator(device).get_state();
}

void restore_rng(const Checkpoint& c, const torch::Device& device, const std::string& origin) {
  auto restore = [&](at::Generator gen, const torch::Tensor& state, const char* name) {
    std::lock_guard<std::mutex> lock(gen.mutex());
    try {
      gen.set_state(state);
    } catch (const c10::Error& e) {  // LibTorch checks the size and dtype; its message names no file
      throw Error(at_path(origin, std::string("RNG state '") + name + "' is invalid: " + e.what_without_backtrace()));
    }
  };
  if (c.rng_cpu.defined()) restore(at::globalContext().defaultGenerator(torch::Device(torch::kCPU)), c.rng_cpu, "rng/cpu");
  if (device.is_cuda() && c.rng_cuda.defined())
    restore(at::globalContext().defaultGenerator(device), c.rng_cuda, "rng/cuda");
}

}  // namespace prom::train
