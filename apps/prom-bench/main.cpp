// prom-bench: benchmarks prom against the Python reference in the same run, and prints ratios.
#include <iostream>

#include "app/app.h"
#include "bench_dist.h"
#include "bench_infer.h"
#include "bench_train.h"
#ifdef PROM_WITH_DATA
#include "bench_loader.h"
#endif

int main(int argc, char** argv) {
  CLI::App cli("prom-bench: measure prom against the PyTorch/torchvision reference", "prom-bench");
  cli.require_subcommand(0, 1);
  // Each benchmark registers its subcommand and runs from its own file.
#ifdef PROM_WITH_DATA
  prom::bench::LoaderBenchOptions loader;
  CLI::App* loader_cmd = prom::bench::add_loader_command(cli, loader);
#endif
  prom::bench::TrainBenchOptions train;
  CLI::App* train_cmd = prom::bench::add_train_command(cli, train);
  prom::bench::InferBenchOptions infer;
  CLI::App* infer_cmd = prom::bench::add_infer_command(cli, infer);
  prom::bench::DistBenchOptions dist;
  CLI::App* dist_cmd = prom::bench::add_dist_command(cli, dist);
  return prom::app::run(cli, argc, argv, [&]() -> int {
    if (train_cmd->parsed()) return prom::bench::run_train_bench(train);
    if (infer_cmd->parsed()) return prom::bench::run_infer_bench(infer);
    if (dist_cmd->parsed()) return prom::bench::run_dist_bench(dist);
#ifdef PROM_WITH_DATA
    if (loader_cmd->parsed()) return prom::bench::run_loader_bench(loader);
#endif
    throw prom::ConfigError("no benchmark named (see --help)");
  });
}
