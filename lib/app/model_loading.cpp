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

LoadedModel load_model(const std::string& checkpoint, const ConfigFlags& flags) {
  LoadedModel out;
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
    set_threads(out.config.run.threads);
  } else {
    out.config = load_config(flags);
  }
  out.classes = ckpt.classes;
  out.model = model::create_model(out.config.model);
  if (out.config.quant.enabled) quant::apply_policy(*out.model, out.config.quant);
  model::load_state_dict(*out.model, ckpt.model, checkpoint);
  out.model->eval();
  return out;
}

}  // namespace prom::app
