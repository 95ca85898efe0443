#include "app/model_loading.h"

#include <unistd.h>

#include <cstdio>

#include "core/build_info.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include "model/registry.h"
#include "model/weights.h"
#include "quant/policy.h"
#include "train/checkpoint.h"

namespace prom::app {

config::Config embedded_config(const std::string& checkpoint, const std::string& yaml,
                               const std::vector<std::string>& overrides) {
  if (yaml.empty()) throw ConfigError(checkpoint + ": has no embedded config; pass --config");
  // The loader reads files: go through a private temporary file.
  char path[] = "/tmp/prom-config-XXXXXX";
  int fd = ::mkstemp(path);
  if (fd < 0) throw Error("cannot create a temporary file for the checkpoint's config");
  ::close(fd);
  try {
    io::write_file_atomic(path, yaml);
    config::Config c = config::load_config(path, overrides);
    c.source = checkpoint;
    std::remove(path);
    return c;
  } catch (const ConfigError& e) {
    std::remove(path);
    throw ConfigError(checkpoint + ": embedded config: " + e.what());
  } catch (...) {
    std::remove(path);
    throw;
  }
}

ModelFile read_model_file(const std::string& checkpoint, const ConfigFlags& flags) {
  ModelFile out;
  train::Checkpoint ckpt;
  try {
    ckpt = train::load_checkpoint(checkpoint);
    out.is_checkpoint = true;
  } catch (const Error&) {
    if (flags.config_path.empty()) throw;  // a plain weights file needs --config
    ckpt.model = train::load_model_tensors(checkpoint, &ckpt.classes);
  }
  if (flags.config_path.empty()) {
    out.config = embedded_config(checkpoint, ckpt.config_yaml, flags.overrides);
    if (flags.threads >= 0) out.config.run.threads = flags.threads;
    apply_threads(out.config);
    check_memory_format(out.config);
    note_config_source(checkpoint + ": embedded config");
  } else {
    out.config = load_config(flags);
  }
  out.classes = ckpt.classes;
  out.tensors = std::move(ckpt.model);
  return out;
}

std::shared_ptr<model::ClassifierModel> build_model(const ModelFile& file, const std::string& origin) {
  auto net = model::create_model(file.config.model);
  if (file.config.quant.enabled) quant::apply_policy(*net, file.config.quant);
  model::load_state_dict(*net, file.tensors, origin);
  net->eval();
  return net;
}

LoadedModel load_model(const std::string& checkpoint, const ConfigFlags& flags) {
  ModelFile file = read_model_file(checkpoint, flags);
  LoadedModel out;
  out.model = build_model(file, checkpoint);
  out.config = std::move(file.config);
  out.classes = std::move(file.classes);
  out.is_checkpoint = file.is_checkpoint;
  return out;
}

}  // namespace prom::app
