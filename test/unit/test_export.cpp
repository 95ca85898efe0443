// Export, the integer engine and the energy/storage model.
#include "support/catch.h"
#include <ATen/Parallel.h>
#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "config/config.h"
#include "energy/report.h"
#include "lowering/lower.h"
#include "infer/engine.h"
#include "infer/kernels.h"
#include "infer/pointwise_dot.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "model/registry.h"
#include "quant/activation_table.h"
#include "quant/arithmetic.h"
#include "quant/int_tensor_ops.h"
#include "quant/exact_forward.h"
#include "quant/int_layer.h"
#include "graph/op_widths.h"
#include "quant/policy.h"
#include "quant/requant_gains.h"
#include "support/command.h"

using namespace prom;
using Catch::Matchers::Contains;

namespace {

config::QuantConfig policy(const std::string& name) {
  test::TempDir dir("export");
  auto path = dir.write("c.yaml", "base: " + test::source("configs/policies/" + name + ".yaml") +
                                      "\nmodel: {arch: mobilenet_v2, num_classes: 5}\n");
  return config::load_config(path).quant;
}

// Training steps of the fixture below. PROM_TEST_QAT_STEPS shrinks them where the run checks memory
// and UB rather than numbers (scripts/sanitize.sh: ASan + UBSan make training several times slower);
// the agreement thresholds of the engine against fake quant assume the full training.
constexpr int kFullQatSteps = 25;
int qat_steps() {
  const char* steps = std::getenv("PROM_TEST_QAT_STEPS");
  return steps ? std::max(1, std::atoi(steps)) : kFullQatSteps;
}

// A small PROM-quantized MobileNetV2 (or another network) with trained observers and non-trivial BN
// statistics.
struct QatFixture {
  std::shared_ptr<model::ClassifierModel> net;
  torch::Tensor images;
  config::QuantConfig quant;
  // requant: quant.requant (fixed_point32 | short | power_of_two). steps: QAT steps (-1: qat_steps()).
  // arch: a registered network (mobilenet_v2 at width 0.35, MNASNet at its name's width, others at 0.5).
  explicit QatFixture(const std::string& policy_name = "prom", int64_t size = 32,
                      const std::string& requant = "fixed_point32", int steps = -1,
                      const std::string& arch = "mobilenet_v2") {
    torch::manual_seed(7);
    config::ModelConfig mc;
    mc.arch = arch;
    mc.num_classes = 5;
    mc.width_mult = arch == "mobilenet_v2" ? 0.35 : arch.rfind("mnasnet", 0) == 0 ? 1.0 : 0.5;
    mc.small_input = true;
    mc.dropout = 0;
    net = model::create_model(mc);
    quant = policy(policy_name);
    quant.requant = requant;
    quant::apply_policy(*net, quant);
    // A learnable task (a fixed pattern per class plus noise), so that logits separate as in a real model.
    auto labels = torch::arange(48) % 5;
    images = torch::randn({5, 3, size, size}).index_select(0, labels) + 0.5 * torch::randn({48, 3, size, size});
    torch::optim::SGD opt(net->parameters(), torch::optim::SGDOptions(0.05).momentum(0.9));
    net->train();
    for (int step = 0, n = steps >= 0 ? steps : qat_steps(); step < n; ++step) {
      opt.zero_grad();
      torch::cross_entropy_loss(net->forward(images), labels).backward();
      opt.step();
    }
    net->eval();
  }
  graph::IntModel exported(const std::string& packing = "2bit") {
    lowering::ExportOptions o;
    o.input_size = images.size(2);
    o.ternary_packing = packing;
    o.classes = {"a", "b", "c", "d", "e"};
    o.preprocess = {o.input_size, o.input_size, {0.5, 0.5, 0.5}, {0.25, 0.25, 0.25}};
    o.multiplier_bits = quant::requant_multiplier_bits(quant);
    return lowering::lower_model(*net, o);
  }
};

// The policies (configs/policies) and requantizations (quant.requant) the exactness and count tests run.
const std::vector<std::pair<std::string, std::string>> kPolicyVariants = {{"prom", "fixed_point32"},
                                                                        {"w8a8", "fixed_point32"},
                                                                        {"all_ternary", "fixed_point32"},
                                                                        {"prom", "short"},
                                                                        {"prom", "power_of_two"},
                                                                        {"prom_lean", "power_of_two"}};

// The energy report's analytic counts of `m`, checked op by op against what `engine` executed
// (operation counts and the widths they run at).
std::vector<infer::LayerCounts> analytic_counts_equal_executed(const infer::IntegerEngine& engine,
                                                               const graph::IntModel& m) {
  auto analytic = energy::analytic_counts(energy::specs_from_int_model(m));
  REQUIRE(analytic.size() == engine.counts().size());
  for (size_t i = 0; i < analytic.size(); ++i) {
    INFO(engine.counts()[i].name);
    CHECK(engine.counts()[i].counts == analytic[i].counts);
    CHECK(engine.counts()[i].widths == analytic[i].widths);
  }
  return analytic;
}

}  // namespace

// Exact rational rounding, ties to even, of p / 2^shift (p and the answer as 128-bit integers).
static int64_t reference_shift(__int128 p, int shift) {
  __int128 d = static_cast<__int128>(1) << shift;
  __int128 q = p / d, r = p % d;
  if (r < 0) {
    r += d;
    --q;
  }
  if (2 * r > d || (2 * r == d && (q & 1))) ++q;
  return static_cast<int64_t>(q);
}

TEST_CASE("requantization rounds once, to nearest with ties to even, as exact arithmetic does", "[export]") {
  namespace arith = quant::arith;
  std::mt19937 rng(1);
  std::uniform_real_distribution<double> log_m(-30.0, 8.0);
  std::uniform_int_distribution<int32_t> acc(-2000000, 2000000), bias(-100000, 100000);
  for (int i = 0; i < 20000; ++i) {
    const double real = std::exp2(log_m(rng));
    const auto m = arith::quantize_multiplier(real);
    REQUIRE(m.multiplier >= (1 << 30));
    CHECK(std::abs(arith::multiplier_value(m) / real - 1) <= std::ldexp(1.0, -30));
    const int64_t a = acc(rng), b = bias(rng);
    const int64_t v = a * 4 + b;
    const int64_t expected = reference_shift(static_cast<__int128>(v) * m.multiplier, m.right_shift);
    CHECK(arith::requantize(a, 2, static_cast<int32_t>(b), m, INT32_MIN, INT32_MAX) == expected);
    CHECK(std::abs(expected - v * arith::multiplier_value(m)) <= 0.5);
  }
  // Ties go to the even neighbour, for both signs; one rule for shifts, divisions and codes.
  CHECK(arith::rounding_shift_right(5, 1) == 2);
  CHECK(arith::rounding_shift_right(7, 1) == 4);
  CHECK(arith::rounding_shift_right(-5, 1) == -2);
  CHECK(arith::rounding_shift_right(-7, 1) == -4);
  CHECK(arith::rounding_shift_right(6, 2) == 2);  // 1.5 -> 2
  CHECK(arith::divide_round_half_even(10, 4) == 2);
  CHECK(arith::divide_round_half_even(14, 4) == 4);
  CHECK(arith::divide_round_half_even(-10, 4) == -2);
  CHECK(arith::quantize_to_code(2.5f, 1.0f, arith::kSignedActivation) == 2);
  CHECK(arith::quantize_to_code(-3.5f, 1.0f, arith::kSignedActivation) == -4);
  CHECK(arith::quantize_to_code(1e9f, 1.0f, arith::kUnsignedActivation) == 255);
  CHECK(arith::add_requantize(3, 0, 1, 0, 1, -128, 127) == 2);  // 1.5 -> 2
  CHECK(arith::add_requantize(5, 0, 1, 0, 1, -128, 127) == 2);  // 2.5 -> 2
  // Multipliers >= 2^30 are refused; tiny ones become 0 (every int32 product rounds to 0).
  CHECK_FALSE(arith::representable_multiplier(std::ldexp(1.0, 30)));
  CHECK(arith::quantize_multiplier(std::ldexp(1.0, -70)).multiplier == 0);
}

TEST_CASE("ternary packing round-trips in 2-bit and base-3 layouts", "[export]") {
  auto codes = torch::randint(-1, 2, {1003}, torch::kInt8);
  for (std::string packing : {"2bit", "base3"}) {
    auto packed = graph::pack_ternary(codes, packing);
    CHECK(packed.size() == (packing == "2bit" ? 251u : 201u));
    auto back = graph::unpack_ternary(packed.data(), packed.size(), 1003, packing, "mem");
    CHECK(torch::equal(back, codes));
  }
  std::vector<uint8_t> bad = {0xff};
  CHECK_THROWS_WITH(graph::unpack_ternary(bad.data(), 1, 4, "2bit", "m.prom"), Contains("invalid 2-bit ternary code"));
  CHECK_THROWS_WITH(graph::unpack_ternary(bad.data(), 1, 5, "base3", "m.prom"), Contains("invalid base-3"));
}

TEST_CASE("the integer engine computes exactly what the fake-quant model computes, and refuses an input of the "
          "wrong shape", "[export]") {
  for (std::string name : {"prom", "w8a8", "all_ternary"}) {
    INFO(name);
    QatFixture f(name);
    REQUIRE(f.net->has_exact_forward());
    torch::NoGradGuard no_grad;
    auto fq = f.net->forward(f.images);
    infer::IntegerEngine engine(f.exported());
    auto logits = engine.logits(f.images);
    INFO("max logit difference " << (fq - logits).abs().max().item<double>());
    CHECK(torch::equal(fq, logits));  // dequantized logits, bit for bit
    CHECK(torch::equal(fq.argmax(1), logits.argmax(1)));
    // Not a constant function (equal constants would prove nothing). Under the sanitizers the fixture
    // trains 3 steps instead of 25, so the spread is small but never zero.
    CHECK(fq.max().item<double>() > fq.min().item<double>());
    if (name != "prom") continue;
    // An input of the wrong size, channel count or rank: one error naming the shape the model takes.
    const auto codes = engine.quantize_input(f.images);
    const int64_t n = codes.size(0), size = codes.size(2);
    for (const auto& bad : {torch::zeros({n, 1, size, size}, torch::kInt16), torch::zeros({n, 3, size + 1, size}, torch::kInt16),
                            torch::zeros({n, 3, size, size - 1}, torch::kInt16), torch::zeros({3, size, size}, torch::kInt16)})
      CHECK_THROWS_WITH(engine.run(bad), Contains("integer engine: input must be [N, 3, " + std::to_string(size) + ", " +
                                                  std::to_string(size) + "]"));
  }
}

TEST_CASE("frozen BN and observers: training logits are the integer model's, gradients the simulated ones", "[export]") {
  QatFixture f("prom");
  f.net->train();
  for (auto& m : f.net->modules(false)) {
    if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(m.get())) bn->eval();
    if (auto* a = dynamic_cast<quant::ActivationQuantImpl*>(m.get())) a->set_observing(false);
  }
  auto exact = std::dynamic_pointer_cast<quant::ExactForwardImpl>(f.net->exact_forward());
  REQUIRE(exact != nullptr);
  REQUIRE(exact->frozen());
  torch::Tensor logits = f.net->forward(f.images);
  infer::IntegerEngine engine(f.exported());
  f.net->train();  // exported() switched to eval
  for (auto& m : f.net->modules(false))
    if (auto* bn = dynamic_cast<torch::nn::BatchNorm2dImpl*>(m.get())) bn->eval();
  CHECK(torch::equal(logits.detach(), engine.logits(f.images)));
  auto labels = torch::arange(48) % 5;
  torch::cross_entropy_loss(logits, labels).backward();
  const auto& stem = f.net->layers().front().conv->weight;
  REQUIRE(stem.grad().defined());
  CHECK(stem.grad().abs().sum().item<double>() > 0);
  // Live BatchNorm: the simulated forward's own values (no integer model exists for batch statistics).
  f.net->train();
  CHECK_FALSE(exact->frozen());
  torch::NoGradGuard no_grad;
  CHECK_FALSE(torch::equal(f.net->forward(f.images), engine.logits(f.images)));
}

// Every dispatch path this CPU runs, portable first; and engine options that select one.
std::vector<infer::kernels::Isa> available_isas() {
  using infer::kernels::Isa;
  std::vector<Isa> isas = {Isa::kPortable};
  if (infer::kernels::best_isa() != Isa::kPortable) isas.push_back(Isa::kAvx2);
  if (infer::kernels::best_isa() == Isa::kAvx512Vnni) isas.push_back(Isa::kAvx512Vnni);
  return isas;
}
// Default options, except that every layer's codes stay readable (engine.activation).
infer::EngineOptions keeping_activations() {
  infer::EngineOptions o;
  o.keep_activations = true;
  return o;
}
infer::EngineOptions engine_options(infer::kernels::Isa isa, bool parallel = true) {
  infer::EngineOptions o = keeping_activations();
  o.allow_avx2 = isa != infer::kernels::Isa::kPortable;
  o.allow_avx512 = isa == infer::kernels::Isa::kAvx512Vnni;
  o.parallel = parallel;
  return o;
}
void warn_missing_isas() {
  if (infer::kernels::best_isa() != infer::kernels::Isa::kAvx512Vnni)
    WARN("this CPU has no AVX-512 VNNI: the avx512-vnni kernels were not run (best here: "
         << infer::kernels::isa_name(infer::kernels::best_isa()) << ")");
}

TEST_CASE("every dispatch path (portable, AVX2, AVX-512 VNNI on 8-bit or int16 codes; ternary dot or add/sub; expand "
          "and depthwise fused or not) gives identical integers, batch 1 and 6, at 32 and 40 px",
          "[export]") {
  warn_missing_isas();
  for (int64_t size : {32, 40}) {  // at 40 px the first depthwise rows are 20 wide: the fused stride-1 kernel
    QatFixture f("prom", size);
    auto m = f.exported();
    infer::IntegerEngine portable(m, engine_options(infer::kernels::Isa::kPortable));
    for (int64_t batch : {1, 6}) {
      auto codes = portable.quantize_input(f.images.slice(0, 0, batch));
      portable.reset_counts();
      auto expected = portable.run(codes);
      for (auto isa : available_isas()) {
        INFO(infer::kernels::isa_name(isa) << ", batch " << batch);
        infer::IntegerEngine engine(m, engine_options(isa));
        CHECK(std::string(engine.kernel_name()) == infer::kernels::isa_name(isa));
        CHECK(torch::equal(engine.run(codes), expected));
        auto addsub_options = engine_options(isa);
        addsub_options.ternary_dot = false;  // ternary 1x1 layers on the add/sub kernel of this path
        infer::IntegerEngine addsub(m, addsub_options);
        CHECK(torch::equal(addsub.run(codes), expected));
        auto pairs_options = engine_options(isa);
        pairs_options.byte_dot = false;  // AVX-512 VNNI: 1x1 layers on int16 pairs (vpdpwssd), not bytes
        infer::IntegerEngine pairs(m, pairs_options);
        CHECK(torch::equal(pairs.run(codes), expected));
        auto unfused_options = engine_options(isa);
        unfused_options.fuse_expand_depthwise = false;  // expand and depthwise layers one after the other
        infer::IntegerEngine unfused(m, unfused_options);
        CHECK(torch::equal(unfused.run(codes), expected));
        auto lean_options = engine_options(isa);
        lean_options.keep_activations = false;  // fused expand layers hand bytes on without writing their codes
        infer::IntegerEngine lean(m, lean_options);
        CHECK(torch::equal(lean.run(codes), expected));
        int unwritten = 0;  // fused expand outputs (AVX-512 VNNI): activation() refuses them
        for (size_t i = 0; i < m.activations.size(); ++i) {
          std::vector<int16_t> lean_codes;
          try {
            lean_codes = lean.activation(i);
          } catch (const Error& e) {
            CHECK(std::string(e.what()).find("keep_activations") != std::string::npos);
            ++unwritten;
            continue;
          }
          CHECK(lean_codes == portable.activation(i));
        }
        // At batch 6 the workers' 3 images may put every depthwise layer on the images-inner path.
        if (isa == infer::kernels::Isa::kAvx512Vnni && batch == 1) CHECK(unwritten > 0);
        if (isa != infer::kernels::Isa::kAvx512Vnni) CHECK(unwritten == 0);
        for (size_t i = 0; i < m.activations.size(); ++i) CHECK(engine.activation(i) == portable.activation(i));
        for (size_t i = 0; i < engine.counts().size(); ++i) CHECK(engine.counts()[i].counts == portable.counts()[i].counts);
      }
    }
  }
}

TEST_CASE("ternary 1x1 kernels on every path and the int8 reference kernel equal the sums they define, odd sizes", "[export]") {
  std::vector<int16_t> x(7 * 37);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<int16_t>((i * 37) % 256 - (i % 3 ? 0 : 128));
  std::vector<int32_t> plus = {0, 3, 6}, minus = {2, 5};
  std::vector<int8_t> w = {3, -7, 127, -127, 0, 1, -1};
  std::vector<int32_t> b(37);
  infer::kernels::int8_pointwise(x.data(), 37, 7, w.data(), b.data());  // the reference; fast paths use the tiles
  for (int64_t p = 0; p < 37; ++p) {
    int32_t dot = 0;
    for (int64_t i = 0; i < 7; ++i) dot += w[i] * x[i * 37 + p];
    CHECK(b[p] == dot);
  }
  for (auto isa : available_isas()) {
    INFO(infer::kernels::isa_name(isa));
    std::vector<int32_t> a(37);
    infer::kernels::ternary_pointwise(x.data(), 37, plus.data(), 3, minus.data(), 2, a.data(), isa);
    for (int64_t p = 0; p < 37; ++p) CHECK(a[p] == x[p] + x[111 + p] + x[222 + p] - x[74 + p] - x[185 + p]);
  }
}

// Requantizes one tile through `requantized` (the kernel under test, given where its codes go) and
// checks every code against quant::arith::requantize of the tile's sums `acc`, with random biases,
// multipliers and shifts (row `zero_row`, if any, gets multiplier 0 and so the unfused path);
// nothing may be written outside the tile's pixels [p0, p0 + n).
template <typename F>
void check_tile_requantized(std::mt19937_64& rng, const std::vector<int32_t>& acc, int64_t rows, int64_t pixels,
                            int64_t p0, int64_t n, int64_t zero_row, const F& requantized) {
  using namespace infer::kernels;
  std::vector<int32_t> bias(kTileRows), mult(kTileRows), shift(kTileRows);
  for (int64_t r = 0; r < kTileRows; ++r) {
    bias[r] = static_cast<int32_t>(rng() % 2001) - 1000;
    mult[r] = r == zero_row ? 0 : static_cast<int32_t>((int64_t{1} << 30) + rng() % (1u << 30));
    shift[r] = mult[r] == 0 ? 0 : 31 + static_cast<int32_t>(rng() % 14);
  }
  const int32_t acc_shift = static_cast<int32_t>(rng() % 3), lo = pixels % 2 ? 0 : -128, hi = lo + 255;
  if (n <= 0) return;
  // Second pass, where every row folds: the engine's precomputed folded requantizations.
  std::vector<quant::arith::FoldedRequant> folded(kTileRows);
  bool all_fold = true;
  for (int64_t r = 0; r < kTileRows; ++r)
    all_fold = quant::arith::fold_requantization(acc_shift, bias[r], {mult[r], shift[r]}, &folded[r]) && all_fold;
  for (bool precomputed : {false, true}) {
    if (precomputed && !all_fold) break;
    INFO((precomputed ? "precomputed folded requantizations" : "requantizations folded per tile"));
    std::vector<int16_t> codes(rows * pixels, 555);
    requantized(TileOutput{bias.data(), mult.data(), shift.data(), acc_shift, lo, hi, codes.data() + p0, pixels, rows,
                           n, precomputed ? folded.data() : nullptr});
    // The same tile into bytes (TileOutput::out_bytes): signed codes + 128, nothing in `out`.
    std::vector<int16_t> untouched(rows * pixels, 555);
    std::vector<uint8_t> bytes(rows * pixels, 0xA5);
    TileOutput to_bytes{bias.data(), mult.data(), shift.data(), acc_shift, lo, hi, untouched.data() + p0, pixels, rows,
                        n, precomputed ? folded.data() : nullptr};
    to_bytes.out_bytes = bytes.data() + p0;
    to_bytes.byte_offset = lo < 0;
    requantized(to_bytes);
    REQUIRE(untouched == std::vector<int16_t>(rows * pixels, 555));
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t j = 0; j < pixels; ++j) {
        if (j < p0 || j >= p0 + n) {
          REQUIRE(codes[r * pixels + j] == 555);  // nothing written outside the tile
          REQUIRE(bytes[r * pixels + j] == 0xA5);
          continue;
        }
        const quant::arith::FixedPointMultiplier m{mult[r], shift[r]};
        const int32_t a = acc[r * kTilePixels + j - p0];
        REQUIRE(codes[r * pixels + j] == quant::arith::requantize(a, acc_shift, bias[r], m, lo, hi));
        REQUIRE(bytes[r * pixels + j] == codes[r * pixels + j] + (lo < 0 ? 128 : 0));
        if (precomputed) REQUIRE(quant::arith::requantize_folded(a, folded[r], lo, hi) == codes[r * pixels + j]);
      }
  }
}

TEST_CASE("the 8-bit dot-product tile on every path equals the direct sum and requantizes as arith does, into int16 "
          "codes or bytes: int8 inputs offset, uint8 inputs as they are, extreme codes, odd channels, partial tiles, "
          "blocks of pixels packed as slices",
          "[export]") {
  using namespace infer::kernels;
  std::mt19937_64 rng(11);
  for (bool is_signed : {true, false})
    for (int64_t in_channels : {1, 3, 6, 64, 161, 577})
      for (int64_t out_channels : {3, 8})
        for (int64_t pixels : {1, 37, 130}) {
          const int lo_code = is_signed ? -128 : 0, hi_code = is_signed ? 127 : 255;
          std::vector<int16_t> x(in_channels * pixels);
          for (auto& v : x) {  // a third at the range's ends, where an offset or a sign would show
            const uint64_t r = rng();
            v = static_cast<int16_t>(r % 3 == 0 ? (r % 2 ? lo_code : hi_code) : lo_code + static_cast<int>(r % 256));
          }
          std::vector<int8_t> w(out_channels * in_channels);
          for (auto& v : w) v = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
          if (in_channels == 577) std::fill(w.begin(), w.end(), int8_t{-127});  // the largest sums of one sign
          const int64_t padded = padded_pixels(pixels), quads = channel_quads(in_channels);
          std::vector<uint8_t> xq(quads * padded * 4, 99);
          pack_input_quads(x.data(), pixels, in_channels, is_signed, 0, pixels, xq.data(), Isa::kPortable);
          for (auto isa : available_isas()) {  // every path packs the same bytes, a block of pixels its slice
            std::vector<uint8_t> again(xq.size(), 77);
            pack_input_quads(x.data(), pixels, in_channels, is_signed, 0, pixels, again.data(), isa);
            REQUIRE(again == xq);
            const int64_t p0 = pixels / 2, count = pixels - p0, block_padded = padded_pixels(count);
            std::vector<uint8_t> block(quads * block_padded * 4, 55);
            pack_input_quads(x.data(), pixels, in_channels, is_signed, p0, count, block.data(), isa);
            for (int64_t k = 0; k < quads; ++k)
              for (int64_t p = 0; p < block_padded; ++p)
                for (int64_t j = 0; j < 4; ++j)
                  REQUIRE(block[(k * block_padded + p) * 4 + j] == (p < count ? xq[(k * padded + p0 + p) * 4 + j] : 0));
          }
          const QuadWeights wq = pack_weight_quads(w.data(), out_channels, in_channels, is_signed);
          for (auto isa : available_isas()) {
            INFO(isa_name(isa) << (is_signed ? ", int8 " : ", uint8 ") << in_channels << " -> " << out_channels << ", "
                               << pixels << " pixels");
            for (int64_t p0 = 0; p0 < padded; p0 += kTilePixels)
              for (int64_t rb = 0; rb * kTileRows < out_channels; ++rb) {
                const int vectors = static_cast<int>((std::min(kTilePixels, padded - p0) + 15) / 16);
                const int32_t* words = wq.words.data() + rb * quads * kTileRows;
                const int32_t* start = wq.start.data() + rb * kTileRows;
                std::vector<int32_t> acc(kTileRows * kTilePixels, -7);
                pointwise_quad_tile(xq.data(), padded, quads, words, start, p0, vectors, acc.data(), isa);
                const int64_t rows = std::min(kTileRows, out_channels - rb * kTileRows), n = std::min(kTilePixels, pixels - p0);
                for (int64_t r = 0; r < rows; ++r)
                  for (int64_t j = 0; j < n; ++j) {
                    const int64_t c = rb * kTileRows + r, p = p0 + j;
                    int32_t want = 0;
                    for (int64_t i = 0; i < in_channels; ++i) want += w[c * in_channels + i] * x[i * pixels + p];
                    REQUIRE(acc[r * kTilePixels + j] == want);
                  }
                check_tile_requantized(rng, acc, rows, pixels, p0, n, in_channels == 6 ? 1 : -1, [&](const TileOutput& out) {
                  pointwise_quad_tile_requantized(xq.data(), padded, quads, words, start, p0, vectors, out, isa);
                });
              }
          }
        }
}

TEST_CASE("the 8-bit classifier on every path equals the direct sum: signed and unsigned codes at the extremes, odd "
          "channels and classes, strided images",
          "[export]") {
  std::mt19937_64 rng(29);
  int64_t compared = 0;
  for (int64_t in_channels : {1, 5, 64, 1281})
    for (int64_t classes : {1, 10, 37, 1000})
      for (bool is_unsigned : {true, false}) {
        const int64_t stride = 3;  // [channel][image] codes of 3 images: the middle one
        std::vector<int8_t> w(classes * in_channels);
        for (auto& v : w) v = static_cast<int8_t>(rng() % 3 == 0 ? (rng() % 2 ? 127 : -127) : static_cast<int>(rng() % 255) - 127);
        std::vector<int16_t> x(in_channels * stride);
        for (auto& v : x) {
          const int lo = is_unsigned ? 0 : -128, hi = is_unsigned ? 255 : 127;
          v = static_cast<int16_t>(rng() % 3 == 0 ? (rng() % 2 ? hi : lo) : lo + static_cast<int>(rng() % (hi - lo + 1)));
        }
        const auto q = infer::kernels::pack_classifier_quads(w.data(), classes, in_channels, !is_unsigned);
        for (auto isa : available_isas()) {
          INFO(infer::kernels::isa_name(isa) << ": " << in_channels << " channels, " << classes << " classes, "
                                             << (is_unsigned ? "unsigned" : "signed"));
          std::vector<int32_t> acc(infer::kernels::padded_pixels(classes), 555);
          infer::kernels::classifier_quads(q, x.data() + 1, stride, acc.data(), isa);
          for (int64_t c = 0; c < classes; ++c) {
            int32_t sum = 0;
            for (int64_t i = 0; i < in_channels; ++i) sum += w[c * in_channels + i] * x[i * stride + 1];
            REQUIRE(acc[c] == sum);
            ++compared;
          }
        }
      }
  CHECK(compared >= 2 * 4 * (1 + 10 + 37 + 1000));
}

TEST_CASE("the dot-product tile on every path equals the direct sum and requantizes as arith does (int16 codes or "
          "bytes): odd channels, "
          "padded pixels, partial row blocks, blocks of pixels packed as slices",
          "[export]") {
  using namespace infer::kernels;
  std::mt19937_64 rng(5);
  for (int64_t in_channels : {1, 7, 64, 161})
    for (int64_t out_channels : {3, 8})
      for (int64_t pixels : {1, 37, 64, 130}) {
        std::vector<int16_t> x(in_channels * pixels);
        for (auto& v : x) v = static_cast<int16_t>(static_cast<int>(rng() % 384) - 128);  // int8 and uint8 codes
        std::vector<int8_t> w(out_channels * in_channels);
        for (auto& v : w) v = static_cast<int8_t>(static_cast<int>(rng() % 255) - 127);
        const int64_t padded = padded_pixels(pixels), pairs = channel_pairs(in_channels);
        std::vector<int16_t> xp(pairs * padded * 2, 99);
        pack_input_pairs(x.data(), pixels, in_channels, 0, pixels, xp.data());
        {  // a block of pixels packs as the full pack's slice, zero past its count
          const int64_t p0 = pixels / 2, count = pixels - p0, block_padded = padded_pixels(count);
          std::vector<int16_t> block(pairs * block_padded * 2, 55);
          pack_input_pairs(x.data(), pixels, in_channels, p0, count, block.data());
          for (int64_t k = 0; k < pairs; ++k)
            for (int64_t p = 0; p < 2 * block_padded; ++p)
              REQUIRE(block[k * block_padded * 2 + p] == (p < 2 * count ? xp[(k * padded + p0) * 2 + p] : 0));
        }
        const auto wp = pack_weight_pairs(w.data(), out_channels, in_channels);
        for (auto isa : available_isas()) {
          INFO(isa_name(isa) << ": " << in_channels << " -> " << out_channels << ", " << pixels << " pixels");
          for (int64_t p0 = 0; p0 < padded; p0 += kTilePixels)
            for (int64_t rb = 0; rb * kTileRows < out_channels; ++rb) {
              std::vector<int32_t> acc(kTileRows * kTilePixels, -7);
              const int vectors = static_cast<int>((std::min(kTilePixels, padded - p0) + 15) / 16);
              pointwise_tile(xp.data(), padded, pairs, wp.data() + rb * pairs * kTileRows, p0, vectors, acc.data(), isa);
              for (int64_t r = 0; r < kTileRows; ++r)
                for (int64_t j = 0; j < 16 * vectors; ++j) {
                  const int64_t c = rb * kTileRows + r, p = p0 + j;
                  int32_t want = 0;
                  for (int64_t i = 0; c < out_channels && p < pixels && i < in_channels; ++i)
                    want += w[c * in_channels + i] * x[i * pixels + p];
                  REQUIRE(acc[r * kTilePixels + j] == want);  // rows and pixels beyond the tensors sum zeros
                }
              // Requantized from the tile: every code equals quant::arith::requantize of the sum.
              const int64_t rows = std::min(kTileRows, out_channels - rb * kTileRows), n = std::min(kTilePixels, pixels - p0);
              check_tile_requantized(rng, acc, rows, pixels, p0, n, in_channels == 7 ? 2 : -1, [&](const TileOutput& out) {
                pointwise_tile_requantized(xp.data(), padded, pairs, wp.data() + rb * pairs * kTileRows, p0, vectors, out, isa);
              });
            }
        }
      }
}

TEST_CASE("at::parallel_for in prom's code runs on several threads (prom compiles with OpenMP)", "[export]") {
  // Without OpenMP flags LibTorch's parallel_for header runs every loop on the calling thread.
  const int threads = torch::get_num_threads();
  torch::set_num_threads(2);
  std::mutex mutex;
  std::set<std::thread::id> seen;
  at::parallel_for(0, 64, 1, [&](int64_t, int64_t) {
    std::lock_guard<std::mutex> lock(mutex);
    seen.insert(std::this_thread::get_id());
  });
  torch::set_num_threads(threads);
  CHECK(seen.size() == 2);
}

TEST_CASE("image-parallel, channel-parallel and serial engines on every path, and every conv plane kernel (depthwise "
          "requantized too), give identical integers and counts",
          "[export]") {
  QatFixture f;
  auto m = f.exported();
  const int threads = torch::get_num_threads();
  torch::set_num_threads(2);  // the parallel paths split output channels, or images from 2 per thread
  for (int64_t batch : {1, 5, 6}) {  // batch 1 splits channels; 5 and 6 images (2 + 3, 3 + 3) per thread
    infer::IntegerEngine portable(m, engine_options(infer::kernels::Isa::kPortable, false));
    auto codes = portable.quantize_input(f.images.slice(0, 0, batch));
    auto expected = portable.run(codes);
    for (auto isa : available_isas()) {
      INFO(infer::kernels::isa_name(isa) << ", batch " << batch);
      auto channels_options = engine_options(isa);
      channels_options.image_parallel = false;
      infer::IntegerEngine parallel(m, engine_options(isa)), channels(m, channels_options),
          serial(m, engine_options(isa, false));
      CHECK(torch::equal(parallel.run(codes), expected));
      CHECK(torch::equal(channels.run(codes), expected));
      CHECK(torch::equal(serial.run(codes), expected));
      for (size_t i = 0; i < m.activations.size(); ++i) CHECK(parallel.activation(i) == portable.activation(i));
      for (size_t i = 0; i < parallel.counts().size(); ++i) {
        CHECK(parallel.counts()[i].counts == portable.counts()[i].counts);
        CHECK(channels.counts()[i].counts == portable.counts()[i].counts);
      }
      parallel.reset_counts();  // a second batch on the same workers: counts restart, integers repeat
      CHECK(torch::equal(parallel.run(codes), expected));
      for (size_t i = 0; i < parallel.counts().size(); ++i) CHECK(parallel.counts()[i].counts == portable.counts()[i].counts);
    }
  }
  torch::set_num_threads(threads);
  // Stem/depthwise planes: odd sizes (wide rows, and narrow ones that the vector 3x3 kernels run
  // flattened), strides 1-3, kernels 1, 3 and 5; kPlaneSlack readable values after the plane, as the
  // engine leaves them.
  for (auto [ph, pw] : {std::pair<int64_t, int64_t>{23, 29}, {10, 75}, {9, 11}, {6, 5}})
  for (int64_t k : {1, 3, 5})
    for (int64_t s : {1, 2, 3}) {
      if (k > ph || k > pw) continue;
      std::vector<int16_t> x(ph * pw + infer::kernels::kPlaneSlack, 0);
      for (int64_t i = 0; i < ph * pw; ++i) x[i] = static_cast<int16_t>((i * 53) % 256 - (i % 5 ? 0 : 128));
      std::vector<int8_t> w(25);
      for (size_t i = 0; i < w.size(); ++i) w[i] = static_cast<int8_t>((i * 37) % 255 - 127);
      const int64_t oh = (ph - k) / s + 1, ow = (pw - k) / s + 1;
      std::vector<int32_t> ref(oh * ow, 5);  // the kernels accumulate onto acc
      for (int64_t oy = 0; oy < oh; ++oy)
        for (int64_t ox = 0; ox < ow; ++ox)
          for (int64_t ky = 0; ky < k; ++ky)
            for (int64_t kx = 0; kx < k; ++kx) ref[oy * ow + ox] += w[ky * k + kx] * x[(oy * s + ky) * pw + ox * s + kx];
      // Images innermost: 5 images, image j's plane is x + j (each value shifted by j).
      const int64_t images = 5;
      std::vector<int16_t> xb(ph * pw * images);
      for (int64_t i = 0; i < ph * pw; ++i)
        for (int64_t j = 0; j < images; ++j) xb[i * images + j] = static_cast<int16_t>(x[i] + j);
      int32_t wsum = 0;
      for (int64_t i = 0; i < k * k; ++i) wsum += w[i];
      std::vector<int32_t> ref_b(oh * ow * images, 5);
      for (int64_t px = 0; px < oh * ow; ++px)
        for (int64_t j = 0; j < images; ++j) ref_b[px * images + j] = ref[px] + static_cast<int32_t>(j) * wsum;
      for (auto isa : available_isas()) {
        INFO(ph << "x" << pw << " plane, k " << k << " stride " << s << ", " << infer::kernels::isa_name(isa));
        std::vector<int32_t> acc(oh * ow, 5), acc_b(oh * ow * images, 5);
        infer::kernels::conv_plane(x.data(), pw, w.data(), k, s, oh, ow, acc.data(), isa);
        CHECK(acc == ref);
        infer::kernels::conv_plane_batched(xb.data(), pw, images, w.data(), k, s, oh, ow, acc_b.data(), isa);
        CHECK(acc_b == ref_b);
        // A depthwise plane requantized (in registers where the path does it, else through the
        // scratch): int8 and uint8 clamps, and a zero multiplier, which every path runs unfused.
        for (const auto& r : {infer::kernels::PlaneRequant{1, 77, 1518500250, 42, -128, 127},
                              infer::kernels::PlaneRequant{0, -3001, 1518500250, 40, 0, 255},
                              infer::kernels::PlaneRequant{1, 5, 0, 0, -128, 127}}) {
          std::vector<int16_t> codes(oh * ow, 99);
          std::vector<int32_t> scratch(oh * ow, 3);
          infer::kernels::depthwise_plane(x.data(), pw, w.data(), k, s, oh, ow, r, scratch.data(), codes.data(), isa);
          const quant::arith::FixedPointMultiplier m{r.multiplier, r.right_shift};
          for (int64_t i = 0; i < oh * ow; ++i)
            REQUIRE(codes[i] == quant::arith::requantize(ref[i] - 5, r.acc_shift, r.bias, m, r.lo, r.hi));
        }
      }
    }
}

TEST_CASE("depthwise 3x3 planes and 3-plane stem channels on 8-bit codes equal the int16 kernels' codes, signed and "
          "unsigned codes, strides 1 and 2, narrow and wide planes",
          "[export]") {
  using infer::kernels::Isa;
  std::mt19937_64 rng(43);
  int64_t runs = 0;
  for (int64_t width : {1, 2, 7, 14, 17, 28, 47, 48, 56, 65, 112})
    for (int64_t height : {1, 3, 7, 28})
      for (int64_t stride : {1, 2})
        for (bool is_unsigned : {true, false})
          for (int64_t planes : {1, 3}) {  // a depthwise plane; a stem channel over 3 input planes
            const int64_t out_h = (height - 1) / stride + 1, out_w = (width - 1) / stride + 1, pw = width + 2;
            const int64_t padded_plane = (height + 2) * pw + infer::kernels::kPlaneSlack;
            const int64_t byte_plane = (height + 2) * pw + infer::kernels::kByteSlack;
            const int lo = is_unsigned ? 0 : -128, hi = is_unsigned ? 255 : 127;
            std::vector<int16_t> x(planes * height * width);
            for (auto& v : x) v = static_cast<int16_t>(rng() % 4 == 0 ? (rng() % 2 ? hi : lo) : lo + static_cast<int>(rng() % 256));
            std::vector<int8_t> w(planes * 9);
            for (auto& v : w) v = static_cast<int8_t>(rng() % 4 == 0 ? (rng() % 2 ? 127 : -127) : static_cast<int>(rng() % 255) - 127);
            std::vector<int16_t> padded(planes * padded_plane, 0);
            for (int64_t i = 0; i < planes; ++i)
              for (int64_t y = 0; y < height; ++y)
                std::copy_n(x.data() + (i * height + y) * width, width, padded.data() + i * padded_plane + (y + 1) * pw + 1);
            const infer::kernels::PlaneRequant r{9, -4321, 1518500250, 49, is_unsigned ? 0 : -128, is_unsigned ? 255 : 127};
            std::vector<int16_t> expected(out_h * out_w);
            std::vector<int32_t> scratch(out_h * out_w);
            infer::kernels::conv_planes_requantized(padded.data(), padded_plane, planes, pw, w.data(), 3, stride, out_h,
                                                    out_w, r, scratch.data(), expected.data(), Isa::kPortable);
            for (auto isa : available_isas()) {
              INFO(planes << " planes of " << height << "x" << width << ", stride " << stride
                          << (is_unsigned ? ", uint8, " : ", int8, ") << infer::kernels::isa_name(isa));
              // The byte copies: padding 0, or 128 (the offset zero) for signed codes.
              std::vector<uint8_t> bytes(planes * byte_plane, is_unsigned ? 0 : 128);
              for (int64_t i = 0; i < planes; ++i)
                infer::kernels::copy_rows_bytes(x.data() + i * height * width, width, height, width,
                                                bytes.data() + i * byte_plane + pw + 1, pw, !is_unsigned, isa);
              for (int64_t i = 0; i < planes; ++i)
                for (int64_t y = 0; y < height; ++y)
                  for (int64_t c = 0; c < width; ++c)
                    REQUIRE(bytes[i * byte_plane + (y + 1) * pw + 1 + c] ==
                            static_cast<uint8_t>(x[(i * height + y) * width + c] + (is_unsigned ? 0 : 128)));
              std::vector<int16_t> codes(out_h * out_w + 8, -7);
              const bool ran =
                  planes == 1 ? infer::kernels::depthwise_plane3_bytes(bytes.data(), pw, w.data(), !is_unsigned, stride,
                                                                       out_h, out_w, r, codes.data(), isa)
                              : infer::kernels::conv_planes3_bytes(bytes.data(), byte_plane, planes, pw, w.data(),
                                                                   !is_unsigned, stride, out_h, out_w, r, codes.data(), isa);
              REQUIRE(ran == (isa == Isa::kAvx512Vnni));
              if (!ran) continue;
              ++runs;
              for (int64_t i = 0; i < out_h * out_w; ++i) REQUIRE(codes[i] == expected[i]);
              for (int64_t i = out_h * out_w; i < out_h * out_w + 8; ++i) REQUIRE(codes[i] == -7);  // nothing past the plane
            }
          }
  if (infer::kernels::best_isa() == Isa::kAvx512Vnni) CHECK(runs == 11 * 4 * 2 * 2 * 2);
  else WARN("SKIPPED: this CPU has no AVX-512 VNNI; the 8-bit depthwise and stem kernels do not run here");
}

TEST_CASE("row copies on every path copy each row's values and nothing between rows, 1 to 70 columns", "[export]") {
  for (int64_t cols = 1; cols <= 70; ++cols) {  // whole vectors, masked tails, odd and even
    const int64_t rows = 3, src_stride = cols + 1, dst_stride = cols + 5;
    std::vector<int16_t> src(rows * src_stride);
    for (size_t i = 0; i < src.size(); ++i) src[i] = static_cast<int16_t>(i * 97 % 511 - 255);
    for (auto isa : available_isas()) {
      INFO(infer::kernels::isa_name(isa) << ", " << cols << " columns");
      std::vector<int16_t> dst(rows * dst_stride, -999);
      infer::kernels::copy_rows(src.data(), src_stride, rows, cols, dst.data(), dst_stride, isa);
      for (int64_t i = 0; i < rows * dst_stride; ++i)
        REQUIRE(dst[i] == (i % dst_stride < cols ? src[i / dst_stride * src_stride + i % dst_stride] : -999));
    }
  }
}

TEST_CASE("the vector residual add equals quant::arith::add_requantize on every lane and path", "[export]") {
  std::mt19937_64 rng(3);
  int64_t compared = 0;
  for (int trial = 0; trial < 500; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 70);  // the 8-lane loop and its scalar tail
    const int shift = static_cast<int>(rng() % 31);  // 0 takes the scalar path
    const int64_t mult_a = static_cast<int64_t>(rng() % (uint64_t{1} << 31)), mult_b = static_cast<int64_t>(rng() % (uint64_t{1} << (shift + 1)));
    const auto grid = trial % 2 ? quant::arith::kUnsignedActivation : quant::arith::kSignedActivation;
    std::vector<int16_t> a(n), b(n);
    for (int i = 0; i < n; ++i) {
      a[i] = static_cast<int16_t>(grid.lo + static_cast<int32_t>(rng() % 256));
      b[i] = static_cast<int16_t>(-128 + static_cast<int32_t>(rng() % 256));
    }
    for (auto isa : available_isas()) {
      std::vector<int16_t> out(n);
      infer::kernels::add_requantize(a.data(), b.data(), n, mult_a, mult_b, shift, grid.lo, grid.hi, out.data(), isa);
      for (int i = 0; i < n; ++i) {
        INFO(infer::kernels::isa_name(isa) << ": " << a[i] << " * " << mult_a << " + " << b[i] << " * " << mult_b << " >> "
                                           << shift);
        REQUIRE(out[i] == quant::arith::add_requantize(a[i], b[i], mult_a, mult_b, shift, grid.lo, grid.hi));
        ++compared;
      }
    }
  }
  // A tie each way: (1 * 1 + 0) / 2 = 0.5 -> 0, (3 * 1) / 2 = 1.5 -> 2.
  const std::vector<int16_t> a = {1, 3, -1, -3, 1, 3, 5, 7}, zero(8, 0);
  std::vector<int16_t> out(8);
  infer::kernels::add_requantize(a.data(), zero.data(), 8, 1, 1, 1, -128, 127, out.data(), infer::kernels::best_isa());
  CHECK(out == std::vector<int16_t>{0, 2, 0, -2, 0, 2, 2, 4});
  CHECK(compared > 20000);
}

TEST_CASE("the AVX2 and AVX-512 requantizations equal quant::arith::requantize on every lane", "[export]") {
  if (infer::kernels::best_isa() == infer::kernels::Isa::kPortable) {
    WARN("SKIPPED: this CPU has no AVX2; only the portable requantization runs");
    return;
  }
  warn_missing_isas();
  std::mt19937_64 rng(11);
  int64_t compared = 0;
  for (int trial = 0; trial < 2000; ++trial) {
    const int n = 1 + static_cast<int>(rng() % 40);  // odd lengths: the 8-lane loop and its scalar tail
    const int acc_shift = static_cast<int>(rng() % 8);
    const int64_t bias_range = trial % 3 == 0 ? (int64_t{1} << 30) : (int64_t{1} << 12);
    const int32_t bias = static_cast<int32_t>(static_cast<int64_t>(rng() % static_cast<uint64_t>(2 * bias_range)) - bias_range);
    // acc * 2^acc_shift + bias must fit int32 (lowering's guarantee): bound |acc| accordingly.
    const int64_t acc_max = ((int64_t{1} << 31) - 1 - std::abs(static_cast<int64_t>(bias))) >> acc_shift;
    const int32_t multiplier = static_cast<int32_t>((int64_t{1} << 30) + static_cast<int64_t>(rng() % (1u << 30)));
    const int32_t right_shift = 1 + static_cast<int32_t>(rng() % 62);
    const auto grid = trial % 2 ? quant::arith::kUnsignedActivation : quant::arith::kSignedActivation;
    std::vector<int32_t> acc(n);
    for (auto& a : acc) {
      a = static_cast<int32_t>(static_cast<int64_t>(rng() % (2 * acc_max + 1)) - acc_max);
      if (rng() % 4 == 0) {  // an exact tie: (v * m) / 2^s = k + 1/2
        a = static_cast<int32_t>(a % 1024);
      }
    }
    if (trial % 5 == 0) acc[0] = static_cast<int32_t>(acc_max), acc[n - 1] = static_cast<int32_t>(-acc_max);
    const quant::arith::FixedPointMultiplier m{multiplier, right_shift};
    for (auto isa : available_isas()) {
      std::vector<int16_t> out(n);
      infer::kernels::requantize(acc.data(), n, acc_shift, bias, multiplier, right_shift, grid.lo, grid.hi, out.data(), isa);
      for (int i = 0; i < n; ++i) {
        INFO(infer::kernels::isa_name(isa) << ": acc " << acc[i] << " shift " << acc_shift << " bias " << bias << " m "
                                           << multiplier << " >> " << right_shift);
        REQUIRE(out[i] == quant::arith::requantize(acc[i], acc_shift, bias, m, grid.lo, grid.hi));
        ++compared;
      }
    }
  }
  // Ties in both directions: multiplier 2^30 and shift 31 halve v, so odd v lands on k + 1/2.
  std::vector<int32_t> ties = {1, 3, 5, -1, -3, -5, 7, 9, 11, 13, -7, -9, 2, 4, 0, -2};
  for (auto isa : available_isas()) {
    INFO(infer::kernels::isa_name(isa));
    std::vector<int16_t> out(ties.size());
    infer::kernels::requantize(ties.data(), static_cast<int64_t>(ties.size()), 0, 0, 1 << 30, 31, -128, 127, out.data(), isa);
    CHECK(out == std::vector<int16_t>{0, 2, 2, 0, -2, -2, 4, 4, 6, 6, -4, -4, 1, 2, 0, -1});
  }
  // The same at shift 32 (the AVX-512 path that clamps in int32 lanes): v / 4, ties at v = 2 mod 4.
  std::vector<int32_t> quarter_ties = {2, 6, 10, 14, -2, -6, -10, -14, 1, 3, 5, 7, -1, -3, -5, 4};
  for (auto isa : available_isas()) {
    INFO(infer::kernels::isa_name(isa));
    std::vector<int16_t> out(quarter_ties.size());
    infer::kernels::requantize(quarter_ties.data(), static_cast<int64_t>(quarter_ties.size()), 0, 0, 1 << 30, 32, -128,
                               127, out.data(), isa);
    CHECK(out == std::vector<int16_t>{0, 2, 2, 4, 0, -2, -2, -4, 0, 1, 1, 2, 0, -1, -1, 1});
  }
  // The extremes of int32 on both sides of the tie-free bound: a multiplier whose lowest set bit is
  // c makes -2^31 * m / 2^(c + 32) a tie (the vector path with the tie test), one bit more of shift
  // makes every product tie-free (the path with bias and acc_shift folded into one constant, when
  // right_shift - acc_shift >= 32). 40 values: a 32-value step and a 16-value step.
  const std::vector<int32_t> extremes = {INT32_MIN, INT32_MAX, INT32_MIN + 1, -(1 << 30), 1 << 30, -(1 << 29) - 1,
                                         (1 << 29) + 1, -12345678, 12345678, -1, 1, 0};
  for (int c : {0, 3, 17, 29}) {
    const int32_t multiplier = (1 << 30) + (1 << c);
    for (int acc_shift : {0, 5})
      for (int32_t bias : {0, -17, 29})
        for (int32_t right_shift : {c + 31, c + 32, c + 33, c + 38, std::min(c + 45, 62)}) {
          std::vector<int32_t> values(40);  // acc * 2^acc_shift + bias stays inside int32 (exactly the
          for (size_t i = 0; i < values.size(); ++i) {  // extremes without shift and bias)
            const int64_t e = extremes[(i * 7) % extremes.size()];
            const int64_t room = acc_shift == 0 && bias == 0 ? 0 : 64;
            values[i] = static_cast<int32_t>((e >= room ? e - room : e <= -room ? e + room : e) / (1 << acc_shift));
          }
          const quant::arith::FixedPointMultiplier m{multiplier, right_shift};
          for (auto isa : available_isas()) {
            std::vector<int16_t> out(values.size());
            infer::kernels::requantize(values.data(), static_cast<int64_t>(values.size()), acc_shift, bias, multiplier,
                                       right_shift, -32768, 32767, out.data(), isa);
            for (size_t i = 0; i < values.size(); ++i) {
              INFO(infer::kernels::isa_name(isa) << ": acc " << values[i] << " << " << acc_shift << " + " << bias
                                                 << ", m " << multiplier << " >> " << right_shift);
              REQUIRE(out[i] == quant::arith::requantize(values[i], acc_shift, bias, m, -32768, 32767));
              ++compared;
            }
          }
        }
  }
  // The bound itself: a tie needs ctz(v) + ctz(m) == right_shift - 1 with ctz(v) <= 31.
  CHECK(quant::arith::ties_possible(int64_t{1} << 30, 62));
  CHECK(quant::arith::ties_possible((1 << 30) + 8, 3 + 32));
  CHECK_FALSE(quant::arith::ties_possible((1 << 30) + 8, 3 + 33));
  const int64_t boundary = int64_t{INT32_MIN} * ((1 << 30) + 8);  // at shift 35: a tie, as the bound allows
  CHECK((boundary & ((int64_t{1} << 35) - 1)) == (int64_t{1} << 34));
  INFO(compared << " values compared");
  CHECK(compared > 20000);
}

TEST_CASE("counted operations and their widths equal the analytic ones, for every policy; ternary layers multiply nothing",
          "[export]") {
  for (const auto& [name, requant] : kPolicyVariants) {
    INFO(name << ", requant " << requant);
    QatFixture f(name, 32, requant);
    auto m = f.exported();
    infer::IntegerEngine engine(m);
    engine.run(engine.quantize_input(f.images.slice(0, 0, 1)));
    const auto analytic = analytic_counts_equal_executed(engine, m);
    int ternary_layers = 0;
    for (size_t i = 0; i < analytic.size(); ++i) {
      INFO(engine.counts()[i].name);
      // Every op but the classifier rounds each value it writes (the logits stay int32).
      CHECK((engine.counts()[i].counts.roundings > 0) == (m.ops[i].kind != graph::OpKind::kLinear));
      bool ternary_pointwise = m.ops[i].kind == graph::OpKind::kConv && m.ops[i].ternary && m.ops[i].kernel == 1 &&
                               m.ops[i].groups == 1;
      if (ternary_pointwise) {
        ++ternary_layers;
        CHECK(engine.counts()[i].counts.int8_mults == 0);
        CHECK(engine.counts()[i].counts.ternary_adds > 0);
      }
    }
    if (name == "prom") CHECK(ternary_layers == 33);  // 16 expansions + 17 projections
    // Counts scale with the batch.
    engine.reset_counts();
    engine.run(engine.quantize_input(f.images.slice(0, 0, 3)));
    CHECK(engine.counts()[0].counts.int8_mults == 3 * analytic[0].counts.int8_mults);
    CHECK(engine.counts()[0].counts.int8_mults > 0);  // the stem multiplies (int8, or ternary codes in all_ternary)
  }
}

// The honest energy count charges 16-bit accumulators where graph::op_widths says the sums fit; the
// engine accumulates in 32 bits, which gives the same results exactly when no partial sum leaves
// int16. Checked against an independent bound (every product at its extreme, by brute force over
// the weights) and against the engine's real accumulators on images.
TEST_CASE("16-bit accumulators only where every partial sum fits int16; the engine's sums stay inside the bound",
          "[export]") {
  QatFixture f("prom");
  auto m = f.exported();
  int narrow = 0, wide = 0;
  for (size_t i = 0; i < m.ops.size(); ++i) {
    const auto& op = m.ops[i];
    if (op.kind != graph::OpKind::kConv && op.kind != graph::OpKind::kLinear) continue;
    INFO(op.name);
    const graph::CodeRange in = graph::code_range(m, op.input);
    auto rows_t = op.weight.to(torch::kInt64).reshape({op.out_channels, -1}).contiguous();
    auto rows = rows_t.accessor<int64_t, 2>();
    int64_t lo = 0, hi = 0;  // brute force: per row, the sums of the negative and of the positive extremes
    for (int64_t c = 0; c < op.out_channels; ++c) {
      int64_t row_lo = 0, row_hi = 0;
      for (int64_t k = 0; k < rows.size(1); ++k) {
        const int64_t w = rows[c][k];
        row_lo += std::min(w * in.lo, w * in.hi);
        row_hi += std::max(w * in.lo, w * in.hi);
      }
      lo = std::min(lo, row_lo);
      hi = std::max(hi, row_hi);
    }
    const auto range = graph::accumulator_range(op, in);
    CHECK(range.lo == lo);
    CHECK(range.hi == hi);
    const int bits = graph::op_widths(m, i).accumulator_bits;
    CHECK(bits == (lo >= -32768 && hi <= 32767 ? 16 : 32));
    (bits == 16 ? narrow : wide) += 1;
  }
  CHECK(narrow > 0);  // the check has both kinds to look at
  CHECK(wide > 0);
  // Real accumulators: the exact forward's conv on codes (float64: exact) never leaves the bound.
  auto exact = std::dynamic_pointer_cast<quant::ExactForwardImpl>(f.net->exact_forward());
  REQUIRE(exact != nullptr);
  torch::NoGradGuard no_grad;
  exact->set_recording(true);
  f.net->forward(f.images.slice(0, 0, 8));
  exact->set_recording(false);
  const auto& codes = exact->recorded_codes();
  for (const auto& op : m.ops) {
    if (op.kind != graph::OpKind::kConv) continue;
    INFO(op.name);
    auto acc = torch::conv2d(codes.at(op.input).to(torch::kFloat64), op.weight.to(torch::kFloat64), {}, op.stride,
                             op.padding, 1, op.groups);
    const auto range = graph::accumulator_range(op, graph::code_range(m, op.input));
    CHECK(acc.min().item<double>() >= static_cast<double>(range.lo));
    CHECK(acc.max().item<double>() <= static_cast<double>(range.hi));
  }
}

TEST_CASE("short and power-of-two multipliers: the nearest with that many significant bits", "[export]") {
  namespace arith = quant::arith;
  std::mt19937 rng(3);
  std::uniform_real_distribution<double> log_m(-20.0, 6.0);
  for (int i = 0; i < 20000; ++i) {
    const double real = std::exp2(log_m(rng));
    const auto full = arith::quantize_multiplier(real);
    for (int bits : {1, 4, 8, 16}) {
      INFO("m " << real << " bits " << bits);
      const auto m = arith::shorten_multiplier(full, bits);
      REQUIRE(m.multiplier != 0);
      CHECK(graph::significant_bits(m.multiplier) <= bits);
      CHECK(m.multiplier >= (1 << 30));  // the engine's mantissa form
      // Nearest: within half a unit of the kept mantissa's last place (relative 2^-bits), plus the
      // full multiplier's own rounding.
      CHECK(std::abs(arith::multiplier_value(m) / real - 1) <= std::ldexp(1.0, -bits) + std::ldexp(1.0, -29));
    }
    CHECK(arith::shorten_multiplier(full, 31).multiplier == full.multiplier);
    const auto pow2 = arith::shorten_multiplier(full, 1);
    CHECK(pow2.multiplier == (1 << 30));  // a power of two: the requantization is a rounding shift
  }
  CHECK(arith::shorten_integer(0b1011, 2) == 0b1100);
  CHECK(arith::shorten_integer(0b1010, 2) == 0b1000);  // a tie goes to the even mantissa
  CHECK(arith::shorten_integer(0b1110, 2) == 0b10000);
  CHECK(arith::shorten_integer(5, 8) == 5);
}

namespace {

// One conv channel of a QAT fixture: its lowered requantization multiplier, the exact one it stands
// for, and the gain the simulated forward applies to it.
struct ChannelRequant {
  const quant::IntLayer* layer;
  int64_t channel;
  double lowered, exact, gain;
};

// Every non-constant conv channel of `f` (a constant one has no multiplier), with the requantization
// gains set from the fixture's current scales first. The layers live as long as `f`.
std::vector<ChannelRequant> conv_channel_requants(QatFixture& f) {
  quant::set_requant_gains(*f.net, quant::requant_multiplier_bits(f.quant));
  auto q = quant::tensor_quantizers(*f.net);
  auto exact = std::dynamic_pointer_cast<quant::ExactForwardImpl>(f.net->exact_forward());
  REQUIRE(exact);
  const auto& lowered = exact->lowered_layers();
  std::vector<ChannelRequant> out;
  for (size_t i = 0; i < f.net->graph().size(); ++i) {
    const auto& node = f.net->graph()[i];
    if (node.kind != model::NodeKind::kConv) continue;
    const quant::IntLayer& l = lowered[i];
    const torch::Tensor gain = q[node.output]->producer_gain();
    REQUIRE(gain.numel() == l.multiplier.numel());
    const double s_in = q[node.inputs[0]]->scale(), s_out = q[node.output]->scale();
    for (int64_t c = 0; c < gain.numel(); ++c) {
      if (l.weight[c].abs().sum().item<int64_t>() == 0) continue;
      const double lowered_m = quant::arith::multiplier_value({l.multiplier[c].item<int32_t>(), l.right_shift[c].item<int32_t>()});
      const double exact_m = std::ldexp(l.weight_scale[c].item<double>() * s_in / s_out, -static_cast<int>(l.acc_shift));
      out.push_back({&l, c, lowered_m, exact_m, gain[c].item<double>()});
    }
  }
  return out;
}

}  // namespace

TEST_CASE("short multipliers' gains equal the ratio of the lowered multiplier to the exact one, channel by channel",
          "[export]") {
  CHECK(quant::shortened_multiplier_gain(0.7, 1) == Approx(0.5 / 0.7).epsilon(1e-9));
  CHECK(quant::shortened_multiplier_gain(0.8 * 1024, 1) == Approx(1.0 / 0.8).epsilon(1e-9));
  CHECK(quant::shortened_multiplier_gain(0.25, 1) == 1.0);
  CHECK(quant::shortened_multiplier_gain(0.7, 31) == 1.0);
  for (const std::string requant : {"power_of_two", "short"}) {
    INFO("requant " << requant);
    QatFixture f("prom", 32, requant);
    const int bits = quant::requant_multiplier_bits(f.quant);
    const auto channels = conv_channel_requants(f);
    for (const ChannelRequant& r : channels) {
      INFO(r.layer->name << " channel " << r.channel);
      CHECK(r.gain == Approx(r.lowered / r.exact).epsilon(1e-5));  // weight_scale is float32
      if (bits == 1) CHECK(std::abs(std::log2(r.lowered) - std::round(std::log2(r.lowered))) < 1e-12);
    }
    CHECK(channels.size() > 500);
  }
}

TEST_CASE("int8 scales fitted to short multipliers: nothing left to shorten (gain 1), codes at least half of 127",
          "[export]") {
  for (const std::string requant : {"power_of_two", "short"}) {
    INFO("requant " << requant);
    QatFixture f("prom_lean", 32, requant);
    const int bits = quant::requant_multiplier_bits(f.quant);
    // The fit rounds each multiplier up by less than one step of its last kept bit.
    const double least_code = 127.0 / (1.0 + std::ldexp(1.0, 1 - bits)) - 0.5;
    int fitted = 0, ternary_off = 0;
    for (const ChannelRequant& r : conv_channel_requants(f)) {
      INFO(r.layer->name << " channel " << r.channel);
      if (r.layer->ternary) {
        ternary_off += std::abs(r.gain - 1) > 1e-3;
        continue;
      }
      CHECK(r.lowered == Approx(r.exact).epsilon(1e-6));
      CHECK(r.gain == Approx(1.0).epsilon(1e-6));
      CHECK(r.layer->weight[r.channel].abs().max().item<int64_t>() >= least_code);
      ++fitted;
    }
    CHECK(fitted > 300);       // stem and depthwise channels
    CHECK(ternary_off > 100);  // the ternary layers' multipliers are still shortened
  }
}

TEST_CASE("short multipliers: with their gains the simulated forward follows the integer model", "[export]") {
  for (const std::string requant : {"power_of_two", "short"}) {
    INFO("requant " << requant);
    // Trained (kFullQatSteps even under the sanitizers' PROM_TEST_QAT_STEPS): after 3 steps the
    // logits are so small that rounding, not the gains, decides the difference.
    QatFixture f("prom", 32, requant, kFullQatSteps);
    const int bits = quant::requant_multiplier_bits(f.quant);
    torch::NoGradGuard no_grad;
    auto hook = std::dynamic_pointer_cast<quant::ExactForwardImpl>(f.net->exact_forward());
    REQUIRE(hook);
    const torch::Tensor exact = hook->exact_logits(f.images);
    // quant.eval_forward: simulated (the hook stays for its gains)
    f.net->set_exact_forward(std::make_shared<quant::ExactForwardImpl>(*f.net, true, bits, false));
    const torch::Tensor with_gains = f.net->forward(f.images);
    f.net->set_exact_forward(nullptr);
    quant::set_requant_gains(*f.net, 31);  // no gains: what QAT simulated before
    const torch::Tensor without = f.net->forward(f.images);
    const double err_with = (with_gains - exact).abs().mean().item<double>();
    const double err_without = (without - exact).abs().mean().item<double>();
    // Top-1 agreement over the images without a near tie in the integer logits (best minus second
    // best >= 2% of the logit range): how many ties a 48-image fixture has depends on how confident
    // its 25 steps made it (on Debian 13's LibTorch 2.6 on an AMD CPU it is less sure than with 1.13),
    // and a tie flips on any rounding difference.
    const torch::Tensor top2 = std::get<0>(exact.topk(2, 1));
    const double range = (exact.max() - exact.min()).item<double>();
    const torch::Tensor decided = (top2.select(1, 0) - top2.select(1, 1)) >= 0.02 * range;
    REQUIRE(decided.sum().item<int64_t>() >= exact.size(0) / 2);
    auto agreement = [&](const torch::Tensor& l) {
      return l.argmax(1).eq(exact.argmax(1)).index({decided}).to(torch::kFloat64).mean().item<double>();
    };
    std::printf("requant %s: mean |simulated - integer logits| %.4g with gains, %.4g without; top-1 agreement "
                "on the %lld of %lld images without a near tie %.1f%% with, %.1f%% without\n", requant.c_str(),
                err_with, err_without, static_cast<long long>(decided.sum().item<int64_t>()),
                static_cast<long long>(exact.size(0)), 100 * agreement(with_gains), 100 * agreement(without));
    // Powers of two move each channel by up to a third: without the gains QAT simulates another
    // network. 8-bit multipliers move it by < 0.2%: the gains help a little, the rest is the
    // rounding any simulated forward differs from the integer one by.
    CHECK(err_with < (bits == 1 ? 0.1 : 1.0) * err_without);
    CHECK(agreement(with_gains) >= (bits == 1 ? 0.95 : agreement(without)));
  }
}

TEST_CASE("export, reload, re-export gives identical bytes; storage is what the file holds", "[export]") {
  QatFixture f;
  test::TempDir dir("export");
  for (std::string packing : {"2bit", "base3"}) {
    INFO(packing);
    auto m = f.exported(packing);
    graph::save_int_model(m, dir.file("m.prom"));
    auto bytes = io::read_file(dir.file("m.prom"));
    auto reloaded = graph::load_int_model(dir.file("m.prom"));
    CHECK(graph::encode_int_model(reloaded) == bytes);
    // Without tables or mul ops a model stays prom-int-v2, which earlier readers read.
    CHECK(bytes.find(std::string("\"format\":\"") + graph::kFormatName + "\"") != std::string::npos);
    // Same logits from the reloaded model.
    infer::IntegerEngine a(m), b(reloaded);
    auto codes = a.quantize_input(f.images);
    CHECK(torch::equal(a.run(codes), b.run(codes)));
    // Analytic storage == tensor payload of the file.
    auto file = io::read_safetensors(dir.file("m.prom"));
    int64_t payload = 0;
    for (const auto& [name, t] : file.tensors) payload += t.numel() * t.element_size();
    int64_t analytic = 0;
    for (const auto& s : energy::specs_from_int_model(reloaded)) analytic += energy::storage_bytes(s, packing);
    CHECK(analytic == payload);
  }
}

TEST_CASE("a damaged model file is an error naming the file", "[export]") {
  QatFixture f;
  test::TempDir dir("export");
  auto m = f.exported();
  auto file = io::decode_safetensors(graph::encode_int_model(m), "mem");
  auto expect_error = [&](io::TensorFile broken, const std::string& what) {
    io::write_safetensors(dir.file("bad.prom"), broken);
    CHECK_THROWS_WITH(graph::load_int_model(dir.file("bad.prom")), Contains("bad.prom: invalid prom model") && Contains(what));
  };
  auto g = file;
  g.metadata["format"] = "other";
  expect_error(g, "format");
  g = file;
  g.tensors.erase("features.0.0.bias");
  expect_error(g, "missing tensor 'features.0.0.bias'");
  g = file;
  g.tensors["features.0.0.bias"] = torch::zeros({3}, torch::kInt32);
  expect_error(g, "wrong shape");
  g = file;
  g.metadata["graph"] = "{\"arch\": 1}";
  expect_error(g, "'arch' has the wrong type");
  g = file;
  auto graph = g.metadata["graph"];
  auto pos = graph.find("\"in_channels\":");
  g.metadata["graph"] = graph.substr(0, pos) + "\"in_channels\":99999999," + graph.substr(graph.find(',', pos) + 1);
  expect_error(g, "out of range");
}

TEST_CASE("energy and storage report for the shipped ImageNet PROM config", "[export]") {
  auto c = config::load_config(test::source("configs/mobilenetv2_prom_imagenet.yaml"));
  auto specs = energy::specs_from_config(c, 1.0);
  auto rep = energy::make_report(specs, c.energy, "2bit");
  // The float baselines are MobileNetV2's own figures.
  CHECK(rep.total.float_params == 3504872);
  CHECK(rep.total.float_macs == 300774272);
  CHECK(rep.total.fp16_bytes == 2 * 3504872);
  CHECK(rep.total.fp16_pj == Approx(300774272 * 1.5));
  // Dense ternary: one addition per pointwise MAC, no multiply in pointwise layers.
  int64_t pointwise_macs = 0, packing_saving = 0;
  for (const auto& s : specs)
    if (s.ternary) {
      pointwise_macs += s.float_macs;
      packing_saving += (s.weights + 3) / 4 - (s.weights + 4) / 5;  // each layer packs on its own
    }
  CHECK(rep.total.counts.ternary_adds == pointwise_macs);
  CHECK(rep.total.counts.int8_mults == 300774272 - pointwise_macs);
  CHECK(rep.fp16_energy_ratio == Approx(rep.total.fp16_pj / rep.total.energy_pj));
  CHECK(rep.fp16_energy_ratio > 5);
  CHECK(rep.fp16_storage_ratio > 2);
  // The paper-like convention (no requantization charged, int8 accumulation) gives a higher ratio.
  CHECK(rep.paper_fp16_energy_ratio > rep.fp16_energy_ratio);
  CHECK(rep.paper_fp16_energy_ratio == Approx(rep.total.fp16_pj / rep.total.paper_pj));
  // Honest by hand for the whole model: sum over ops of each count at its width.
  double by_hand = 0;
  for (const auto& lc : energy::analytic_counts(specs)) {
    const auto& k = lc.counts;
    const double acc = lc.widths.accumulator_bits == 16 ? c.energy.int16_add : c.energy.int32_add;
    const double mult = lc.widths.requant_bits <= 1 ? 0.0 : c.energy.int32_mult * lc.widths.requant_bits / 32.0;
    by_hand += k.ternary_adds * acc + k.int8_mults * (c.energy.int8_mult + acc) + (k.int32_adds - k.int8_mults) * c.energy.int32_add +
               k.requant_mults * mult + k.roundings * c.energy.int32_add;
  }
  CHECK(rep.total.energy_pj == Approx(by_hand).epsilon(1e-12));
  CHECK(rep.total.accumulations16 > 0);  // some pointwise layers of MobileNetV2 1.0 fit 16-bit sums
  CHECK(rep.total.accumulations16 < rep.total.accumulations);
  // Power-of-two multipliers charge no requantization multiply; short ones a narrow one.
  auto pow2 = c;
  pow2.quant.requant = "power_of_two";
  auto rep_pow2 = energy::make_report(energy::specs_from_config(pow2, 1.0), c.energy, "2bit");
  auto shorter = c;
  shorter.quant.requant = "short";
  auto rep_short = energy::make_report(energy::specs_from_config(shorter, 1.0), c.energy, "2bit");
  CHECK(rep_pow2.fp16_energy_ratio > rep_short.fp16_energy_ratio);
  CHECK(rep_short.fp16_energy_ratio > rep.fp16_energy_ratio);
  CHECK(rep_pow2.paper_fp16_energy_ratio == Approx(rep.paper_fp16_energy_ratio));  // paper-like ignores it
  INFO(energy::format_report(rep, true, true));
  CHECK(energy::report_json(rep).find("\"fp16_energy_ratio\"") != std::string::npos);
  CHECK(energy::report_json(rep).find("\"paper_like\"") != std::string::npos);
  // base-3 packing stores ternary weights in 1/5 byte each instead of 1/4.
  auto rep3 = energy::make_report(specs, c.energy, "base3");
  CHECK(rep.total.bytes - rep3.total.bytes == packing_saving);
}

TEST_CASE("accumulator int16 in the ImageNet report: every ternary layer's sums 16-bit, rows capped at 256 non-zeros",
          "[export]") {
  auto c = config::load_config(test::source("configs/mobilenetv2_prom_lean_acc16_imagenet.yaml"));
  auto uncapped = c;
  for (auto& rule : uncapped.quant.rules) rule.weight.accumulator = "int32";
  const double density = 0.576;
  const auto specs = energy::specs_from_config(c, density), free = energy::specs_from_config(uncapped, density);
  REQUIRE(specs.size() == free.size());
  int capped_rows = 0, ternary = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    INFO(specs[i].name);
    if (!specs[i].ternary) {
      CHECK(specs[i].widths == free[i].widths);
      continue;
    }
    ++ternary;
    CHECK(specs[i].widths.accumulator_bits == 16);
    const int64_t row = specs[i].weights / specs[i].out_channels;
    const int64_t left = std::llround(density * row);
    CHECK(specs[i].nonzero_weights == (left > 256 ? 256 * specs[i].out_channels : free[i].nonzero_weights));
    capped_rows += left > 256;
  }
  CHECK(ternary == 34);  // 16 expansions, 17 projections, last_conv
  CHECK(capped_rows == 6);  // the projections that read 576 and 960 channels
  const auto rep = energy::make_report(specs, c.energy, "2bit"), rep_free = energy::make_report(free, c.energy, "2bit");
  CHECK(rep.fp16_energy_ratio > rep_free.fp16_energy_ratio);
}

namespace {

// Code mismatches between the exact fake-quant forward and the engine, over every graph tensor but
// the logits, for each image of `images`; also checks the dequantized logits bit for bit.
int64_t code_mismatches(model::ClassifierModel& net, infer::IntegerEngine& engine, const torch::Tensor& images,
                        int64_t* compared) {
  auto exact = std::dynamic_pointer_cast<quant::ExactForwardImpl>(net.exact_forward());
  REQUIRE(exact != nullptr);
  torch::NoGradGuard no_grad;
  net.eval();
  exact->set_recording(true);
  torch::Tensor fq = net.forward(images);
  exact->set_recording(false);
  const auto& codes = exact->recorded_codes();
  const auto& m = engine.model();
  int64_t bad = 0;
  for (int64_t n = 0; n < images.size(0); ++n) {
    torch::Tensor logits = engine.logits(images.slice(0, n, n + 1));
    CHECK(torch::equal(logits, fq.slice(0, n, n + 1)));
    for (size_t t = 0; t < m.activations.size(); ++t) {
      if (static_cast<int>(t) == m.output) continue;
      torch::Tensor ref = codes.at(t)[n].contiguous().flatten().to(torch::kInt32);
      const auto& a = engine.activation(t);
      auto ours = torch::from_blob(const_cast<int16_t*>(a.data()), {static_cast<int64_t>(a.size())}, torch::kInt16);
      REQUIRE(ref.numel() == ours.numel());
      bad += ref.ne(ours.to(torch::kInt32)).sum().item<int64_t>();
      *compared += ref.numel();
    }
  }
  return bad;
}

// 0 code mismatches on every tensor, over at least `min_compared` codes.
void check_codes_equal(model::ClassifierModel& net, infer::IntegerEngine& engine, const torch::Tensor& images,
                       int64_t min_compared) {
  int64_t total = 0;
  const int64_t bad = code_mismatches(net, engine, images, &total);
  INFO(bad << " of " << total << " activation codes differ");
  CHECK(total > min_compared);
  CHECK(bad == 0);
}

}  // namespace

TEST_CASE("every tensor's integer codes equal the fake-quant codes (trained fixtures: three policies, three requantizations)",
          "[export]") {
  for (const auto& [name, requant] : kPolicyVariants) {
    INFO(name << ", requant " << requant);
    QatFixture f(name, 32, requant);
    const auto exported = f.exported();
    if (requant != "fixed_point32") {  // the multipliers really are that short, in convs and residual adds
      const int bits = quant::requant_multiplier_bits(f.quant);
      for (size_t i = 0; i < exported.ops.size(); ++i)
        if (exported.ops[i].kind == graph::OpKind::kConv || exported.ops[i].kind == graph::OpKind::kAdd)
          CHECK(graph::op_widths(exported, i).requant_bits <= bits);
    }
    infer::IntegerEngine engine(exported, keeping_activations());
    check_codes_equal(*f.net, engine, f.images.slice(0, 0, 8), 100000);
  }
}

TEST_CASE("MNASNet (ReLU, 5x5 depthwise): every tensor's integer codes and the logits equal the fake-quant model's",
          "[export]") {
  for (std::string name : {"prom", "w8a8"}) {
    INFO(name);
    QatFixture f(name, 32, "fixed_point32", -1, "mnasnet0_5");
    REQUIRE(f.net->has_exact_forward());
    const auto exported = f.exported();
    int relu = 0, kernel5 = 0;
    const auto& layers = f.net->layers();
    for (const auto& op : exported.ops) {
      if (op.kind != graph::OpKind::kConv) continue;
      kernel5 += op.kernel == 5;
      auto layer = std::find_if(layers.begin(), layers.end(), [&](const auto& l) { return l.name == op.name; });
      REQUIRE(layer != layers.end());
      if (layer->activation != model::Activation::kRelu) continue;
      ++relu;
      CHECK(op.clamp_lo == 0);
    }
    CHECK(relu > 10);
    CHECK(kernel5 == 10);  // the three stacks of 5x5 blocks (3 + 3 + 4)
    {  // ReLU clamps at code 0 on a signed output grid too (here every ReLU output is read unsigned)
      const auto q = quant::tensor_quantizers(*f.net);
      const auto& node = f.net->graph().at(0);  // the stem: conv + BN + ReLU
      auto io = quant::layer_io(node, q, nullptr, layers[0].name, 31);
      io.output_unsigned = false;
      CHECK(quant::lower_layer(layers[0], io).clamp_lo == 0);
      io.relu = false;
      CHECK(quant::lower_layer(layers[0], io).clamp_lo == -128);
    }
    infer::IntegerEngine engine(exported, keeping_activations());
    check_codes_equal(*f.net, engine, f.images.slice(0, 0, 8), 100000);
    torch::NoGradGuard no_grad;
    auto fq = f.net->forward(f.images);
    CHECK(torch::equal(fq, engine.logits(f.images)));
    CHECK(fq.max().item<double>() > fq.min().item<double>());
  }
}

TEST_CASE("MobileNetV3 and EfficientNet quantized: every activation table equals the simulated activation code for "
          "code, squeeze-and-excitation scaling equals arith::mul_requantize, exact and simulated logits agree, the exported "
          "model's codes and logits equal the exact forward's, its counts the energy report's",
          "[export]") {
  for (std::string arch : {"mobilenet_v3_small", "efficientnet_b0"}) {
    INFO(arch);
    QatFixture f("prom", 32, "fixed_point32", -1, arch);
    REQUIRE(f.net->has_exact_forward());
    auto hook = std::dynamic_pointer_cast<quant::ExactForwardImpl>(f.net->exact_forward());
    REQUIRE(hook);
    torch::NoGradGuard no_grad;
    const auto& graph = f.net->graph();
    const auto& layers = f.net->layers();
    const auto q = quant::tensor_quantizers(*f.net);
    const auto pre = quant::preactivation_quantizers(*f.net);
    const auto& lowered = hook->lowered_layers();
    // Tables: feed every pre-activation code through the modules (the activation with its input
    // quantizer, then the consumer's quantizer) and compare with the lowered table.
    int tables = 0;
    for (size_t i = 0; i < graph.size(); ++i) {
      const auto& node = graph[i];
      if (node.layer < 0 || !quant::needs_table(node.activation)) continue;
      INFO(layers[node.layer].name << " " << model::activation_name(node.activation));
      REQUIRE(pre[i]);
      REQUIRE(q[node.output]);
      const torch::Tensor& table = lowered[i].table;
      REQUIRE(table.defined());
      torch::Tensor codes = torch::arange(-128, 128, torch::kFloat32);
      torch::Tensor y = layers[node.layer].activation_layer.ptr()->forward(codes * pre[i]->scale_tensor());
      torch::Tensor out = torch::round(q[node.output]->quantize(y) / q[node.output]->scale_tensor()).to(torch::kInt32);
      CHECK(torch::equal(out, table));
      CHECK(table.min().item<int>() >= q[node.output]->qmin());
      CHECK(table.max().item<int>() <= q[node.output]->qmax());
      CHECK(table.max().item<int>() > table.min().item<int>());
      ++tables;
    }
    CHECK(tables > 10);
    // Squeeze-and-excitation: the recorded codes of every scaling, element by element.
    hook->set_recording(true);
    const torch::Tensor exact = hook->exact_logits(f.images.slice(0, 0, 8));
    hook->set_recording(false);
    const auto& codes = hook->recorded_codes();
    int muls = 0;
    for (const auto& node : graph) {
      if (node.kind != model::NodeKind::kMul) continue;
      const int x_t = node.inputs[0], g_t = node.inputs[1];
      const quant::IntMul mul = quant::lower_mul(q[x_t]->scale(), q[g_t]->scale(), q[node.output]->scale(),
                                                 q[node.output]->is_unsigned());
      const int64_t n = codes[x_t].size(0), c = codes[x_t].size(1), hw = codes[x_t].size(2) * codes[x_t].size(3);
      torch::Tensor x = codes[x_t].contiguous().reshape({n, c, hw});
      torch::Tensor out = codes[node.output].contiguous().reshape({n, c, hw});
      torch::Tensor g = codes[g_t].reshape({n, c}).contiguous();
      CHECK(g.min().item<float>() >= 0);
      auto xa = x.accessor<float, 3>();
      auto oa = out.accessor<float, 3>();
      auto ga = g.accessor<float, 2>();
      int64_t mismatches = 0;
      for (int64_t a = 0; a < n; ++a)
        for (int64_t ch = 0; ch < c; ++ch)
          for (int64_t p = 0; p < hw; ++p)
            mismatches += oa[a][ch][p] != quant::arith::mul_requantize(static_cast<int64_t>(xa[a][ch][p]),
                                                                       static_cast<int64_t>(ga[a][ch]), mul.multiplier,
                                                                       mul.clamp_lo, mul.clamp_hi);
      CHECK(mismatches == 0);
      ++muls;
    }
    CHECK(muls > 5);
    // The exact forward is the model's eval forward, and the simulated forward follows it.
    const torch::Tensor eval = f.net->forward(f.images);
    f.net->set_exact_forward(std::make_shared<quant::ExactForwardImpl>(*f.net, true, 31, false));
    const torch::Tensor simulated = f.net->forward(f.images);
    f.net->set_exact_forward(hook);
    CHECK(torch::equal(eval.slice(0, 0, 8), exact));
    const double agreement = eval.argmax(1).eq(simulated.argmax(1)).to(torch::kFloat64).mean().item<double>();
    const double range = (eval.max() - eval.min()).item<double>();
    const double diff = (eval - simulated).abs().max().item<double>();
    std::printf("%s: top-1 agreement of exact and simulated logits %.1f%%, largest difference %.3g of a range %.3g\n",
                arch.c_str(), 100 * agreement, diff, range);
    CHECK(range > 0);
    CHECK(agreement >= 0.9);
    // Exported (prom-int-v3), reloaded and run by the engine on every dispatch path: every tensor's
    // codes and the logits equal the exact forward's.
    test::TempDir dir("v3-export");
    graph::save_int_model(f.exported(), dir.file("m.prom"));
    const graph::IntModel loaded = graph::load_int_model(dir.file("m.prom"));
    CHECK(graph::encode_int_model(loaded) == io::read_file(dir.file("m.prom")));
    CHECK(io::read_file(dir.file("m.prom")).find(graph::kFormatNameV3) != std::string::npos);
    int table_ops = 0, mul_ops = 0;
    for (const auto& op : loaded.ops) {
      table_ops += op.table.defined();
      mul_ops += op.kind == graph::OpKind::kMul;
    }
    CHECK(table_ops == tables);
    CHECK(mul_ops == muls);
    for (bool avx2 : {false, true}) {
      INFO("avx2 " << avx2);
      infer::EngineOptions options = keeping_activations();
      options.allow_avx2 = avx2;
      infer::IntegerEngine engine(loaded, options);
      check_codes_equal(*f.net, engine, f.images.slice(0, 0, 4), 10000);
      CHECK(torch::equal(engine.logits(f.images), eval));
      // What the engine executed (table lookups and gate products included) is what the energy
      // report counts, op by op.
      engine.reset_counts();
      engine.run(engine.quantize_input(f.images.slice(0, 0, 1)));
      int64_t lookups = 0;
      for (const auto& counted : analytic_counts_equal_executed(engine, loaded)) lookups += counted.counts.lookups;
      CHECK(lookups > 0);
    }
  }
}

TEST_CASE("every tensor's integer codes equal the fake-quant codes (MobileNetV2 1.0 at 224, random weights)", "[export]") {
  torch::manual_seed(11);
  config::ModelConfig mc;
  mc.num_classes = 1000;
  auto net = model::create_model(mc);
  quant::apply_policy(*net, policy("prom"));
  torch::Tensor images = torch::randn({2, 3, 224, 224});
  {  // calibrate the observers (and BN statistics) on the images themselves
    torch::NoGradGuard no_grad;
    net->train();
    net->forward(images);
  }
  lowering::ExportOptions o;
  o.input_size = 224;
  infer::IntegerEngine engine(lowering::lower_model(*net, o), keeping_activations());
  check_codes_equal(*net, engine, images.slice(0, 0, 1), 5000000);
}

namespace {

// Random inputs of every arithmetic function and prom's results, for read_prom_model.py's mirror.
io::TensorFile arithmetic_cases() {
  namespace arith = quant::arith;
  std::mt19937 rng(5);
  const int64_t n = 20000;
  std::uniform_int_distribution<int64_t> acc(-3000000, 3000000), bias(-200000, 200000), code(-128, 255),
      shift(0, 64), small(-1000, 1000), den(1, 300);
  std::uniform_real_distribution<double> log_m(-30.0, 6.0);
  std::uniform_real_distribution<float> x(-300.0f, 300.0f);
  auto i64 = [&](int64_t count) { return torch::empty({count}, torch::kInt64); };
  io::TensorFile f;
  for (auto name : {"rq_acc", "rq_bias", "rq_multiplier", "rq_right_shift", "rq_lo", "rq_hi", "requantize_expected",
                    "add_a", "add_b", "add_mult_a", "add_mult_b", "add_shift", "add_expected", "div_num", "div_den",
                    "divide_expected", "shift_x", "shift_n", "shift_expected", "quantize_expected"})
    f.tensors[name] = i64(n);
  f.tensors["rq_acc_shift"] = torch::full({1}, 3, torch::kInt64);
  f.tensors["q_x"] = torch::empty({n}, torch::kFloat32);
  f.tensors["q_inv"] = torch::full({1}, 1.0f / 0.0371f, torch::kFloat32);
  auto at = [&](const char* name) { return f.tensors[name].data_ptr<int64_t>(); };
  for (int64_t i = 0; i < n; ++i) {
    const auto m = arith::quantize_multiplier(std::exp2(log_m(rng)));
    const int64_t a = acc(rng) / 8, b = bias(rng), lo = i % 3 == 0 ? 0 : -128, hi = i % 3 == 0 ? 255 : 127;
    at("rq_acc")[i] = a, at("rq_bias")[i] = b, at("rq_multiplier")[i] = m.multiplier;
    at("rq_right_shift")[i] = m.right_shift, at("rq_lo")[i] = lo, at("rq_hi")[i] = hi;
    at("requantize_expected")[i] = arith::requantize(a, 3, static_cast<int32_t>(b), m, static_cast<int32_t>(lo),
                                                     static_cast<int32_t>(hi));
    const int64_t ca = code(rng), cb = code(rng), ma = std::abs(acc(rng)) * 300, mb = std::abs(acc(rng)) * 300;
    const int s = static_cast<int>(shift(rng) % 31);
    at("add_a")[i] = ca, at("add_b")[i] = cb, at("add_mult_a")[i] = ma, at("add_mult_b")[i] = mb, at("add_shift")[i] = s;
    at("add_expected")[i] = arith::add_requantize(ca, cb, ma, mb, s, -128, 127);
    const int64_t num = small(rng) * 97 + small(rng), d = den(rng);
    at("div_num")[i] = num, at("div_den")[i] = d, at("divide_expected")[i] = arith::divide_round_half_even(num, d);
    const int64_t sx = acc(rng) * acc(rng), sn = shift(rng) % 64;
    at("shift_x")[i] = sx, at("shift_n")[i] = sn, at("shift_expected")[i] = arith::rounding_shift_right(sx, static_cast<int>(sn));
    const float xv = i % 7 == 0 ? 0.0371f * (static_cast<float>(small(rng)) + 0.5f) : x(rng);  // many exact ties
    f.tensors["q_x"].data_ptr<float>()[i] = xv;
    at("quantize_expected")[i] = arith::quantize_to_code(xv, 1.0f / 0.0371f, arith::kSignedActivation);
  }
  return f;
}

}  // namespace

// Run by CTest's read_prom_model test, which then checks the files with scripts/read_prom_model.py.
TEST_CASE("write models (prom-int-v2 and v3), their integer inputs, outputs and logits, and arithmetic cases for "
          "read_prom_model.py", "[read_prom_model]") {
  const char* dir = std::getenv("PROM_CROSSCHECK_DIR");
  REQUIRE(dir != nullptr);
  io::write_safetensors(std::string(dir) + "/arithmetic.safetensors", arithmetic_cases());
  // `name`.prom and `name`_io.safetensors: the engine's input codes and int32 logits for 4 images.
  auto write_model_and_logits = [&](QatFixture& fixture, const graph::IntModel& model, const std::string& name) {
    graph::save_int_model(model, std::string(dir) + "/" + name + ".prom");
    infer::IntegerEngine reloaded(graph::load_int_model(std::string(dir) + "/" + name + ".prom"));
    torch::Tensor codes = reloaded.quantize_input(fixture.images.slice(0, 0, 4));
    io::TensorFile model_io;
    model_io.tensors["input"] = codes;
    model_io.tensors["logits"] = reloaded.run(codes);
    io::write_safetensors(std::string(dir) + "/" + name + "_io.safetensors", model_io);
  };
  QatFixture f("prom");
  auto m = f.exported();
  write_model_and_logits(f, m, "model");
  infer::IntegerEngine engine(graph::load_int_model(std::string(dir) + "/model.prom"), keeping_activations());
  engine.run(engine.quantize_input(f.images.slice(0, 0, 1)));
  for (auto [layer, file] : {std::pair{"features.0.0", "stem_io"}, std::pair{"features.2.conv.0.0", "ternary_io"},
                             std::pair{"features.2.conv.1.0", "depthwise_io"}}) {
    const graph::IntOp* op = nullptr;
    for (const auto& o : m.ops)
      if (o.name == layer) op = &o;
    REQUIRE(op != nullptr);
    CHECK(op->ternary == (std::string(file) == "ternary_io"));
    auto tensor_of = [&](int id) {
      const auto& a = m.activations[id];
      const auto& v = engine.activation(id);
      return torch::from_blob(const_cast<int16_t*>(v.data()), {a.channels, a.height, a.width}, torch::kInt16).clone();
    };
    io::TensorFile out;
    out.tensors["input"] = tensor_of(op->input);
    out.tensors["output"] = tensor_of(op->output);
    io::write_safetensors(std::string(dir) + "/" + file + ".safetensors", out);
  }
  // A prom-int-v3 model (activation tables and squeeze-and-excitation): MobileNetV3 Small.
  QatFixture v3("prom", 32, "fixed_point32", -1, "mobilenet_v3_small");
  write_model_and_logits(v3, v3.exported(), "model_v3");
}
