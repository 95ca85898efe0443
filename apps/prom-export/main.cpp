// prom-export: from a QAT checkpoint to the deployable integer model (docs/model-format.md).
#include <cstdio>
#include <iostream>

#include "app/app.h"
#include "app/model_loading.h"
#include "core/error.h"
#include "energy/report.h"
#include "lowering/lower.h"
#include "io/atomic_file.h"
#include "quant/int_layer.h"
#include "train/checkpoint.h"
#ifdef PROM_WITH_ONNX
#include "onnx/onnx_export.h"
#endif

namespace {

// --format onnx: the integer model as QDQ ONNX (lib/onnx). `source` names the input in errors.
int write_onnx(const prom::graph::IntModel& m, const std::string& source, const std::string& out,
               const std::string& bias) {
#ifdef PROM_WITH_ONNX
  namespace ox = prom::onnx_export;
  ox::OnnxSummary s;
  std::string bytes;
  try {
    bytes = ox::encode_onnx_model(m, {bias == "int32" ? ox::BiasFormat::kInt32 : ox::BiasFormat::kFloat}, &s);
  } catch (const prom::ConfigError&) {
    throw;
  } catch (const prom::Error& e) {
    throw prom::Error(prom::at_path(source, e.what()));
  }
  ox::write_onnx_file(bytes, out);
  std::printf("wrote %s: %zu bytes, QDQ ONNX opset %lld (IR version %lld), %d nodes, %d ternary and %d int8 layers, "
              "%s biases; passed onnx::checker\n", out.c_str(), s.bytes, static_cast<long long>(ox::kOpsetVersion),
              static_cast<long long>(ox::kIrVersion), s.nodes, s.ternary_layers, s.int8_layers,
              bias == "int32" ? "int32" : "float32");
  return 0;
#else
  (void)m;
  (void)out;
  (void)bias;
  throw prom::Error(source + ": --format onnx: prom was built without ONNX (install libonnx-dev and rebuild)");
#endif
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App cli("prom-export: write a QAT checkpoint as an integer-only model (ternary + int8)", "prom-export");
  prom::app::ConfigFlags flags;
  prom::app::add_config_flags(cli, flags, false);
  std::string checkpoint, out, packing = "2bit", format = "prom", model_file, onnx_bias = "float";
  cli.add_option("--checkpoint", checkpoint, "QAT checkpoint (prom-train with quant.enabled)")->type_name("FILE");
  cli.add_option("--model", model_file, "an exported integer model to convert (with --format onnx), instead of --checkpoint")
      ->type_name("FILE.prom");
  cli.add_option("--format", format, "prom: the integer model (docs/model-format.md); onnx: QDQ ONNX, opset 13")
      ->check(CLI::IsMember({"prom", "onnx"}))
      ->capture_default_str();
  cli.add_option("--onnx-bias", onnx_bias, "--format onnx biases: float (prom's exact bias) or int32 (fused by ONNX "
                 "Runtime into integer kernels; drops the bias's fractional bits)")
      ->check(CLI::IsMember({"float", "int32"}))
      ->capture_default_str();
  cli.add_option("-o,--out", out, "model file to write (written atomically)")->required()->type_name("FILE.prom");
  cli.add_option("--packing", packing, "ternary weight packing: 2bit (4 per byte) or base3 (5 per byte)")
      ->check(CLI::IsMember({"2bit", "base3"}));
  bool ema = false;
  cli.add_flag("--ema", ema, "export the checkpoint's EMA weights (train.ema.enabled) instead of the trained ones");
  return prom::app::run(cli, argc, argv, [&] {
    if (checkpoint.empty() == model_file.empty())
      throw prom::ConfigError("give either --checkpoint (a QAT checkpoint) or --model (an exported .prom model)");
    if (!model_file.empty()) {
      if (format != "onnx") throw prom::ConfigError("--model " + model_file + ": is already a .prom model (use --format onnx)");
      return write_onnx(prom::graph::load_int_model(model_file), model_file, out, onnx_bias);
    }
    prom::app::ModelFile file = prom::app::read_model_file(checkpoint, flags);
    if (ema) {  // the shadow's weights and quantizer state, under the same names as the model's
      std::map<std::string, torch::Tensor> shadow =
          file.is_checkpoint ? prom::train::load_checkpoint(checkpoint).ema : std::map<std::string, torch::Tensor>{};
      if (shadow.empty())
        throw prom::ConfigError(checkpoint + ": --ema: the file holds no EMA weights (train.ema.enabled was off)");
      file.tensors = std::move(shadow);
    }
    prom::app::LoadedModel loaded{file.config, prom::app::build_model(file, checkpoint), file.classes,
                                  file.is_checkpoint};
    const auto& c = loaded.config;
    if (!c.quant.enabled)
      throw prom::ConfigError(checkpoint + ": is a float checkpoint (quant.enabled is false): export needs QAT");
    prom::lowering::ExportOptions o;
    o.ternary_packing = packing;
    o.classes = loaded.classes;
    o.input_size = c.data.eval_transform.crop;
    o.preprocess = {c.data.eval_transform.resize, c.data.eval_transform.crop, c.data.mean, c.data.std};
    o.multiplier_bits = prom::quant::requant_multiplier_bits(c.quant);
    auto m = prom::lowering::lower_model(*loaded.model, o);
    if (format == "onnx") return write_onnx(m, checkpoint, out, onnx_bias);
    std::string bytes = prom::graph::encode_int_model(m);
    prom::io::write_file_atomic(out, bytes);
    // Read it back: what we ship must load and re-encode to the same bytes.
    if (prom::graph::encode_int_model(prom::graph::load_int_model(out)) != bytes)
      throw prom::Error(out + ": the written model does not read back identically");
    int64_t ternary = 0, int8 = 0;
    for (const auto& op : m.ops)
      if (op.weight.defined()) (op.ternary ? ternary : int8) += op.weight.numel();
    auto rep = prom::energy::make_report(prom::energy::specs_from_int_model(m), c.energy, packing);
    std::printf("wrote %s: %zu bytes, %lld ternary weights (%s), %lld int8 weights, %zu ops; "
                "storage %.2fx less than fp16, energy %.2fx less than fp16 (honest count; paper-like %.2fx)\n",
                out.c_str(), bytes.size(), static_cast<long long>(ternary), packing.c_str(),
                static_cast<long long>(int8), m.ops.size(), rep.fp16_storage_ratio, rep.fp16_energy_ratio,
                rep.paper_fp16_energy_ratio);
    return 0;
  });
}
