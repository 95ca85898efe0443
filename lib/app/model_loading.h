// Models as the binaries load them: a checkpoint (float or QAT; its embedded config by default) or
// a weights file with --config. QAT checkpoints get their fake quantizers before their state loads.
#pragma once
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "app/app.h"
#include "model/layer.h"

namespace prom::app {

// A checkpoint or weights file, read but not yet turned into a model.
struct ModelFile {
  config::Config config;
  std::map<std::string, torch::Tensor> tensors;
  std::vector<std::string> classes;  // empty for a weights file without a class list
  bool is_checkpoint = false;
};

// The config for `checkpoint`: --config when given, else the checkpoint's own (with --set applied).
ModelFile read_model_file(const std::string& checkpoint, const ConfigFlags& flags);
// The model the file describes (fake quantizers attached for QAT), its state loaded; CPU, eval mode.
std::shared_ptr<model::ClassifierModel> build_model(const ModelFile& file, const std::string& origin);

struct LoadedModel {
  config::Config config;
  std::shared_ptr<model::ClassifierModel> model;  // on CPU, eval mode, NCHW parameters
  std::vector<std::string> classes;               // empty for a weights file without a class list
  bool is_checkpoint = false;
};

// read_model_file + build_model.
LoadedModel load_model(const std::string& checkpoint, const ConfigFlags& flags);

// A checkpoint's embedded config, validated like a file; errors name the checkpoint.
config::Config embedded_config(const std::string& checkpoint, const std::string& yaml,
                               const std::vector<std::string>& overrides);

}  // namespace prom::app
