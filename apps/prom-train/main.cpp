// prom-train: trains a model from a YAML config, or continues a stopped run with --resume.
#include <filesystem>
#include <iostream>

#include "app/app.h"
#include "app/sources.h"
#include "core/error.h"
#include "distributed/comm.h"
#include "distributed/world.h"
#include "train/checkpoint.h"
#include "train/device.h"
#include "train/trainer.h"

int main(int argc, char** argv) {
  CLI::App cli("prom-train: train a float or PROM-quantized model from a YAML config", "prom-train");
  prom::app::ConfigFlags flags;
  prom::app::add_config_flags(cli, flags, false);
  std::string resume;
  cli.add_option("--resume", resume,
                 "continue the run in RUN_DIR exactly where it stopped (its config.yaml and last.safetensors; "
                 "--set still applies, e.g. train.epochs)")
      ->type_name("RUN_DIR");
  return prom::app::run(cli, argc, argv, [&] {
    namespace fs = std::filesystem;
    if (!resume.empty()) {
      if (!flags.config_path.empty())
        throw prom::ConfigError("--resume: the config comes from " + resume +
                                "/config.yaml; drop --config (change keys with --set)");
      if (!fs::exists(prom::train::last_checkpoint(resume)))
        throw prom::ConfigError("--resume " + resume + ": no " + prom::train::last_checkpoint(resume) +
                                " (not a run directory, or the run never finished a step)");
      flags.config_path = resume + "/config.yaml";
    }
    prom::config::Config config = prom::app::load_config(flags);
    if (flags.print_config) {
      std::cout << prom::config::to_yaml(config);
      return 0;
    }
    prom::train::TrainOptions options;
    std::vector<std::string> expected_classes;
    if (resume.empty()) {
      options.run_dir = (fs::path(config.run.out_dir) / config.run.name).string();
      if (fs::exists(prom::train::last_checkpoint(options.run_dir)))
        throw prom::ConfigError(options.run_dir + ": already holds a run; continue it with --resume " +
                                options.run_dir + ", or choose another run.name");
    } else {
      options.run_dir = resume;
      options.resume_from = prom::train::last_checkpoint(resume);
      expected_classes = prom::train::load_checkpoint(options.resume_from).classes;
    }
    // Data-parallel when launched by torchrun, srun, a PyTorchJob or scripts/launch_local.sh.
    const prom::dist::WorldInfo world = prom::dist::detect_world();
    if (world.rank == 0) std::cout << "prom-train: " << prom::app::apply_threads(config) << std::endl;
    options.local_rank = world.local_rank;
    const torch::Device device = prom::train::resolve_device(config.run.device, world.local_rank);
    const bool cuda = device.is_cuda();
    prom::app::SourceRequest request;
    request.batch_size = prom::dist::per_rank_batch(config.train.batch_size, world.world_size);
    request.rank = world.rank;
    request.world_size = world.world_size;
    request.channels_last = config.model.channels_last;
    request.pin_memory = cuda;
    auto train_source = prom::app::make_source(config, request);
    prom::train::check_classes(expected_classes, train_source->classes(), options.resume_from);
    request.eval = true;
    auto eval_source = prom::app::make_source(config, request);
    if (eval_source->classes() != train_source->classes()) {  // labels are indices: both must mean the same
      const fs::path root(config.data.root);
      throw prom::Error(prom::at_path((root / config.data.val_dir).string(),
                                      "its classes differ from those of " + (root / config.data.train_dir).string() +
                                          " (" + std::to_string(eval_source->classes().size()) + " and " +
                                          std::to_string(train_source->classes().size()) + " classes)"));
    }
    if (world.distributed()) options.comm = prom::dist::Comm::connect(world, config.dist, device);
    return prom::train::train(config, options, *train_source, eval_source.get());
  });
}
