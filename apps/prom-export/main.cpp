// prom-export: from a QAT checkpoint to the deployable integer model (docs/model-format.md).
#include <cstdio>
#include <iostream>

#include "app/app.h"
#include "app/model_loading.h"
#include "core/error.h"
#include "energy/report.h"
#include "export/exporter.h"
#include "io/atomic_file.h"

int main(int argc, char** argv) {
  CLI::App cli("prom-export: write a QAT checkpoint as an integer-only model (ternary + int8)", "prom-export");
  prom::app::ConfigFlags flags;
  prom::app::add_config_flags(cli, flags, false);
  std::string checkpoint, out, packing = "2bit";
  cli.add_option("--checkpoint", checkpoint, "QAT checkpoint (prom-train with quant.enabled)")->required()->type_name("FILE");
  cli.add_option("-o,--out", out, "model file to write (written atomically)")->required()->type_name("FILE.prom");
  cli.add_option("--packing", packing, "ternary weight packing: 2bit (4 per byte) or base3 (5 per byte)")
      ->check(CLI::IsMember({"2bit", "base3"}));
  return prom::app::run(cli, argc, argv, [&] {
    auto loaded = prom::app::load_model(checkpoint, flags);
    const auto& c = loaded.config;
    if (!c.quant.enabled)
      throw prom::ConfigError(checkpoint + ": is a float checkpoint (quant.enabled is false): export needs QAT");
    prom::exporter::ExportOptions o;
    o.ternary_packing = packing;
    o.classes = loaded.classes;
    o.input_size = c.data.eval_transform.crop;
    o.preprocess = {c.data.eval_transform.resize, c.data.eval_transform.crop, c.data.mean, c.data.std};
    auto m = prom::exporter::export_model(*loaded.model, o);
    std::string bytes = prom::exporter::encode_int_model(m);
    prom::io::write_file_atomic(out, bytes);
    // Read it back: what we ship must load and re-encode to the same bytes.
    if (prom::exporter::encode_int_model(prom::exporter::load_int_model(out)) != bytes)
      throw prom::Error(out + ": the written model does not read back identically");
    int64_t ternary = 0, int8 = 0;
    for (const auto& op : m.ops)
      if (op.weight.defined()) (op.ternary ? ternary : int8) += op.weight.numel();
    auto rep = prom::energy::make_report(prom::energy::specs_from_int_model(m), c.energy, packing);
    std::printf("wrote %s: %zu bytes, %lld ternary weights (%s), %lld int8 weights, %zu ops; "
                "storage %.2fx less than fp16, energy %.2fx less than fp16\n",
                out.c_str(), bytes.size(), static_cast<long long>(ternary), packing.c_str(),
                static_cast<long long>(int8), m.ops.size(), rep.fp16_storage_ratio, rep.fp16_energy_ratio);
    return 0;
  });
}
