// prom-data: dataset preparation tools.
//   prom-data fashion-mnist --out DIR [--source DIR]   IDX files -> DIR/{train,test}/<class>/*.png
#include <chrono>
#include <iostream>

#include "app/app.h"
#include "data/fashion_mnist.h"

int main(int argc, char** argv) {
  CLI::App cli("prom-data: prepare datasets for prom", "prom-data");
  cli.require_subcommand(0, 1);
  prom::data::FashionMnistOptions fm;
  auto* fashion = cli.add_subcommand("fashion-mnist", "convert Fashion-MNIST's IDX files into an image folder (PNG)");
  fashion->add_option("--out", fm.out, "output directory (DIR/train/<class>, DIR/test/<class>)")->required();
  fashion->add_option("--source", fm.source, "folder with the *-ubyte.gz IDX files")->capture_default_str();
  return prom::app::run(cli, argc, argv, [&]() -> int {
    if (fashion->parsed()) {
      auto t0 = std::chrono::steady_clock::now();
      auto r = prom::data::convert_fashion_mnist(fm);
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::cout << "fashion-mnist: " << fm.out << ": " << r.train << " train, " << r.test << " test images in 10 classes"
                << (r.up_to_date ? " (already complete, nothing written)" : "") << " in " << s << " s\n";
      return prom::kExitOk;
    }
    throw prom::ConfigError("no command given (see --help)");
  });
}
