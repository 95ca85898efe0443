#include "infer/engine.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>

#include "core/error.h"
#include "infer/kernels.h"
#include "quant/arithmetic.h"
#include "quant/int_tensor_ops.h"

namespace prom::infer {

using graph::IntOp;
using graph::OpKind;

namespace {
// The multiplication-free kernel's case. Ternary weights of other convolutions (all-ternary stem and
// depthwise layers) run through the int8 kernels, with codes in {-1, 0, 1}, and are counted as such.
bool is_pointwise(const IntOp& op) {
  return op.kind == OpKind::kConv && op.kernel == 1 && op.groups == 1 && op.stride == 1 && op.padding == 0;
}
bool is_ternary_pointwise(const IntOp& op) { return is_pointwise(op) && op.ternary; }

bool is_depthwise(const IntOp& op) {
  return op.kind == OpKind::kConv && op.groups == op.in_channels && op.out_channels == op.in_channels;
}
// The vector 3x3 kernels fill their lanes on small planes too (kernels.h); the others vectorize
// over images instead when the planes are narrow (conv_general).
bool fills_vectors_per_plane(const IntOp& op, kernels::Isa isa) {
  return isa != kernels::Isa::kPortable && op.kernel == 3 && (op.stride == 1 || op.stride == 2);
}

// conv_general's layout choice: narrow outputs of a batch of at least 4 images run with images
// innermost (vectors over images), unless the plane kernels fill their vectors per plane.
bool runs_images_inner(const IntOp& op, int64_t images, int64_t out_width, kernels::Isa isa) {
  return images >= 4 && out_width < 16 && !fills_vectors_per_plane(op, isa);
}

// Each output channel's requantization in the folded form of the AVX-512 tiles, precomputed, when
// every channel folds and the clamp lies within int16; else empty (the tiles then fold per tile).
std::vector<quant::arith::FoldedRequant> fold_requantizations(const IntOp& op) {
  std::vector<quant::arith::FoldedRequant> folded(op.out_channels);
  if (op.clamp_lo < INT16_MIN || op.clamp_hi > INT16_MAX) return {};
  const auto bias = op.bias.accessor<int32_t, 1>();
  const auto mult = op.multiplier.accessor<int32_t, 1>();
  const auto shift = op.right_shift.accessor<int32_t, 1>();
  for (int64_t c = 0; c < op.out_channels; ++c)
    if (!quant::arith::fold_requantization(static_cast<int32_t>(op.acc_shift), bias[c], {mult[c], shift[c]}, &folded[c]))
      return {};
  return folded;
}

kernels::Isa engine_isa(const EngineOptions& options) {
  const kernels::Isa best = kernels::best_isa();
  if (!options.allow_avx2) return kernels::Isa::kPortable;
  if (!options.allow_avx512 && best == kernels::Isa::kAvx512Vnni) return kernels::Isa::kAvx2;
  return best;
}
}  // namespace

IntegerEngine::IntegerEngine(graph::IntModel model, EngineOptions options)
    : model_(std::move(model)),
      options_(options),
      isa_(engine_isa(options)),
      parallel_(options.parallel),
      ternary_dot_(options.ternary_dot),
      byte_dot_(options.byte_dot),
      fuse_(options.fuse_expand_depthwise) {
  // Activation memory bounds the batch: about 64 MB of int16 codes (a few images of MobileNetV2 1.0
  // at 224 px; small models reach max_batch).
  int64_t per_image = 0;
  for (const auto& a : model_.activations) per_image += a.channels * a.height * a.width;
  constexpr int64_t kActivationBudget = int64_t{32} << 20;  // codes
  capacity_ = std::clamp<int64_t>(kActivationBudget / std::max<int64_t>(1, per_image), 1, std::max<int64_t>(1, options.max_batch));
  for (const auto& a : model_.activations) acts_.emplace_back(capacity_ * a.channels * a.height * a.width);
  plus_.resize(model_.ops.size());
  minus_.resize(model_.ops.size());
  plus_offsets_.resize(model_.ops.size());
  minus_offsets_.resize(model_.ops.size());
  weight_pairs_.resize(model_.ops.size());
  weight_quads_.resize(model_.ops.size());
  tables_.resize(model_.ops.size());
  folded_.resize(model_.ops.size());
  size_t max_pixels = 0, max_padded = 0;
  for (size_t i = 0; i < model_.ops.size(); ++i) {
    const IntOp& op = model_.ops[i];
    counts_.push_back({op.name.empty() ? graph::op_kind_name(op.kind) : op.name, op.kind, op.role, {},
                       graph::op_widths(model_, i)});
    const auto& in = model_.activations[op.input];
    const auto& out = model_.activations[op.output];
    max_pixels = std::max<size_t>(max_pixels, out.height * out.width);
    // The layer-sized padded planes of conv_general (conv_depthwise pads per thread).
    if (op.kind == OpKind::kConv && !is_pointwise(op) && !(is_depthwise(op) && fills_vectors_per_plane(op, isa_)))
      max_padded = std::max<size_t>(max_padded, in.channels * ((in.height + 2 * op.padding) * (in.width + 2 * op.padding) +
                                                               kernels::kPlaneSlack));
    pack_weights(i);
    if (op.table.defined()) {
      torch::Tensor t = op.table.to(torch::kInt16).contiguous();
      tables_[i].assign(t.data_ptr<int16_t>(), t.data_ptr<int16_t>() + 256);
    }
    if (is_ternary_pointwise(op)) {
      // Index lists per output channel: the kernel adds the inputs at `plus` and subtracts those at `minus`.
      torch::Tensor w = op.weight.reshape({op.out_channels, op.in_channels}).contiguous();
      const int8_t* wp = w.data_ptr<int8_t>();
      for (int64_t c = 0; c < op.out_channels; ++c) {
        plus_offsets_[i].push_back(static_cast<int64_t>(plus_[i].size()));
        minus_offsets_[i].push_back(static_cast<int64_t>(minus_[i].size()));
        for (int64_t k = 0; k < op.in_channels; ++k) {
          int8_t v = wp[c * op.in_channels + k];
          if (v == 1) plus_[i].push_back(static_cast<int32_t>(k));
          else if (v == -1) minus_[i].push_back(static_cast<int32_t>(k));
          else if (v != 0) throw Error("integer engine: ternary layer " + op.name + " has a code outside {-1, 0, 1}");
        }
      }
      plus_offsets_[i].push_back(static_cast<int64_t>(plus_[i].size()));
      minus_offsets_[i].push_back(static_cast<int64_t>(minus_[i].size()));
    }
  }
  std::vector<int> readers(model_.activations.size(), 0);
  for (const IntOp& op : model_.ops)
    for (int id : {op.input, op.input2})
      if (id >= 0) ++readers[id];
  for (const IntOp& op : model_.ops)
    reads_once_.push_back(op.output >= 0 && readers[op.output] == 1 && op.output != model_.output);
  for (size_t i = 0; i < model_.ops.size(); ++i) fusable_.push_back(fusable(i));
  max_pixels_ = static_cast<int64_t>(max_pixels);
  padded_.resize(capacity_ * max_padded);
  seconds_.assign(model_.ops.size(), 0.0);
  written_.assign(model_.activations.size(), true);
}

// The packed weights and precomputed requantizations that op i's fast kernels read, per path.
void IntegerEngine::pack_weights(size_t i) {
  const IntOp& op = model_.ops[i];
  const auto& in = model_.activations[op.input];
  const bool byte_codes = isa_ == kernels::Isa::kAvx512Vnni && byte_dot_;  // vpdpbusd on 8-bit codes
  if (op.kind == OpKind::kLinear && isa_ != kernels::Isa::kPortable && !byte_codes) {
    // The classifier's weights take the packed input's place (classes are the vector lanes) and
    // the images' codes the broadcast weights': batch 1 fills whole vectors.
    torch::Tensor wt = op.weight.reshape({op.out_channels, op.in_channels}).t().to(torch::kInt16).contiguous();
    const int64_t pairs = kernels::channel_pairs(op.in_channels);
    classifier_pairs_.resize(model_.ops.size());
    classifier_pairs_[i].resize(pairs * kernels::padded_pixels(op.out_channels) * 2);
    kernels::pack_input_pairs(wt.data_ptr<int16_t>(), op.out_channels, op.in_channels, 0, op.out_channels,
                              classifier_pairs_[i].data());
    image_words_.resize(std::max<size_t>(image_words_.size(), ((capacity_ + kernels::kTileRows - 1) / kernels::kTileRows) *
                                                                  kernels::kTileRows * pairs));
  }
  if (op.kind == OpKind::kLinear && byte_codes) {  // linear_quads
    classifier_quads_.resize(model_.ops.size());
    classifier_quads_[i] = kernels::pack_classifier_quads(op.weight.contiguous().data_ptr<int8_t>(), op.out_channels,
                                                          op.in_channels, !in.is_unsigned);
  }
  if (is_pointwise(op) && byte_codes) {  // 8-bit codes, vpdpbusd
    weight_quads_[i] = kernels::pack_weight_quads(op.weight.contiguous().data_ptr<int8_t>(), op.out_channels,
                                                  op.in_channels, !in.is_unsigned);
  } else if (is_pointwise(op) && isa_ != kernels::Isa::kPortable) {  // int16 pairs, madd
    weight_pairs_[i] = kernels::pack_weight_pairs(op.weight.contiguous().data_ptr<int8_t>(), op.out_channels, op.in_channels);
  }
  if (is_pointwise(op) && isa_ == kernels::Isa::kAvx512Vnni) folded_[i] = fold_requantizations(op);
}

const char* IntegerEngine::pointwise_kernel_name() const {
  switch (isa_) {
    case kernels::Isa::kAvx512Vnni: return byte_dot_ ? "vpdpbusd, 8-bit codes" : "vpdpwssd, int16 pairs";
    case kernels::Isa::kAvx2: return "madd, int16 pairs";
    case kernels::Isa::kPortable: break;
  }
  return "reference kernels";
}

void IntegerEngine::reset_counts() {
  for (auto& c : counts_) c.counts = {};
  std::fill(seconds_.begin(), seconds_.end(), 0.0);
}

namespace {

// Runs body(c0, c1) over output channels [0, n): split over LibTorch's intra-op threads when
// `parallel` and each chunk has enough work. Every channel is computed by the same code either way,
// so results are bit-identical.
template <typename F>
void for_channels(bool parallel, int64_t n, int64_t work_per_channel, const F& body) {
  if (!parallel || at::get_num_threads() <= 1) return body(0, n);
  const int64_t grain = std::max<int64_t>(1, (int64_t{1} << 15) / std::max<int64_t>(1, work_per_channel));
  at::parallel_for(0, n, grain, body);
}

// Accumulator scratch of the calling thread, at least `n` values.
int32_t* thread_acc(int64_t n) {
  thread_local std::vector<int32_t> acc;
  if (static_cast<int64_t>(acc.size()) < n) acc.resize(n);
  return acc.data();
}

// Byte scratch of the calling thread, at least `n` values; one buffer per Slot: 0 a padded plane of
// 8-bit codes (depthwise_channels), 1 conv_expand_depthwise's block of expanded planes.
template <int Slot>
uint8_t* thread_bytes(int64_t n) {
  thread_local std::vector<uint8_t> bytes;
  if (static_cast<int64_t>(bytes.size()) < n) bytes.resize(n);
  return bytes.data();
}

// Code scratch of the calling thread (a padded plane), at least `n` values.
int16_t* thread_codes(int64_t n) {
  thread_local std::vector<int16_t> codes;
  if (static_cast<int64_t>(codes.size()) < n) codes.resize(n);
  return codes.data();
}

}  // namespace

torch::Tensor IntegerEngine::quantize_input(const torch::Tensor& images) const {
  const auto& a = model_.activations[model_.input];
  // The exact fake-quant forward quantizes its input with the same function.
  return quant::quantize_codes(images.contiguous(), static_cast<float>(a.scale), quant::arith::activation_grid(a.is_unsigned))
      .to(torch::kInt16);
}

torch::Tensor IntegerEngine::run(const torch::Tensor& codes_in) {
  const auto& a = model_.activations[model_.input];
  torch::Tensor codes = codes_in.to(torch::kInt16).contiguous();
  if (codes.dim() != 4 || codes.size(1) != a.channels || codes.size(2) != a.height || codes.size(3) != a.width)
    throw Error("integer engine: input must be [N, " + std::to_string(a.channels) + ", " + std::to_string(a.height) +
                ", " + std::to_string(a.width) + "]");
  const int64_t n = codes.size(0);
  const auto& out = model_.activations[model_.output];
  torch::Tensor logits = torch::empty({n, out.channels}, torch::kInt32);
  const int64_t image_size = a.channels * a.height * a.width;
  last_worker_ = -1;
  const int threads = at::get_num_threads();
  if (parallel_ && options_.image_parallel && threads > 1 && n >= 2 * threads) {
    run_image_parallel(codes.data_ptr<int16_t>(), n, logits.data_ptr<int32_t>(), threads);
    return logits;
  }
  for (int64_t i = 0; i < n; i += capacity_)
    run_batch(codes.data_ptr<int16_t>() + i * image_size, std::min(capacity_, n - i),
              logits.data_ptr<int32_t>() + i * out.channels);
  return logits;
}

void IntegerEngine::run_image_parallel(const int16_t* input, int64_t images, int32_t* logits, int threads) {
  if (static_cast<int>(workers_.size()) < threads) {
    EngineOptions serial = options_;
    serial.parallel = false;
    // Fewer images per worker batch than the engine's own budget: at 224 px one image per batch
    // (its activations, ~14 MB of int16 codes for MobileNetV2, the nearest a thread gets to its
    // caches) measured 62-64 ms at batch 32 against 65-84 ms with 2 or more; small images still
    // batch (vectors over images in narrow planes).
    constexpr int64_t kWorkerActivations = int64_t{8} << 20;  // codes
    int64_t per_image = 0;
    for (const auto& a : model_.activations) per_image += a.channels * a.height * a.width;
    serial.max_batch = std::clamp<int64_t>(kWorkerActivations / std::max<int64_t>(1, per_image), 1, options_.max_batch);
    while (static_cast<int>(workers_.size()) < threads) workers_.push_back(std::make_unique<IntegerEngine>(model_, serial));
  }
  const auto& in = model_.activations[model_.input];
  const int64_t image_size = in.channels * in.height * in.width, classes = model_.activations[model_.output].channels;
  // Workers take chunks of images from a shared counter rather than fixed shares: on a machine
  // whose cores run at different speeds (a VM's vCPUs, or a core shared with another process) a
  // fixed half leaves the faster worker waiting. About 4 chunks per worker, at most a worker batch.
  const int64_t chunk = std::clamp<int64_t>(images / (4 * threads), 1, workers_[0]->batch_capacity());
  std::atomic<int64_t> next{0};
  std::atomic<int> last{-1};
  for (auto& w : workers_) w->reset_counts();
  at::parallel_for(0, threads, 1, [&](int64_t w0, int64_t w1) {
    for (int64_t w = w0; w < w1; ++w)
      for (int64_t b = next.fetch_add(chunk); b < images; b = next.fetch_add(chunk)) {
        const int64_t n = std::min(chunk, images - b);
        const torch::Tensor codes = torch::from_blob(const_cast<int16_t*>(input) + b * image_size,
                                                     {n, in.channels, in.height, in.width}, torch::kInt16);
        const torch::Tensor out = workers_[w]->run(codes);
        std::copy(out.data_ptr<int32_t>(), out.data_ptr<int32_t>() + n * classes, logits + b * classes);
        if (b + n == images) last = static_cast<int>(w);
      }
  });
  // The counts are what the workers executed; the seconds are wall time (the workers ran side by side).
  for (int w = 0; w < threads; ++w)
    for (size_t i = 0; i < counts_.size(); ++i) {
      counts_[i].counts += workers_[w]->counts_[i].counts;
      seconds_[i] += workers_[w]->seconds_[i] / threads;
    }
  last_worker_ = last;
}

std::vector<int16_t> IntegerEngine::activation(size_t id) const {
  if (last_worker_ >= 0) return workers_[last_worker_]->activation(id);
  const auto& a = model_.activations.at(id);
  if (!written_[id])
    throw Error("integer engine: activation " + std::to_string(id) +
                " is a fused expand layer's output, not written (EngineOptions::keep_activations)");
  const int64_t pixels = a.height * a.width;
  std::vector<int16_t> out(a.channels * pixels);
  if (batch_ == 0) return out;
  for (int64_t c = 0; c < a.channels; ++c) {
    const int16_t* plane = acts_[id].data() + (c * batch_ + batch_ - 1) * pixels;
    std::copy(plane, plane + pixels, out.begin() + c * pixels);
  }
  return out;
}

torch::Tensor IntegerEngine::logits(const torch::Tensor& images) {
  torch::Tensor acc = run(quantize_input(images));
  const IntOp& head = model_.ops.back();
  return acc.to(torch::kFloat32) * head.output_scale.unsqueeze(0);
}

void IntegerEngine::run_batch(const int16_t* input, int64_t images, int32_t* logits) {
  batch_ = images;
  std::fill(written_.begin(), written_.end(), true);
  // [image][C][H*W] -> [C][image][H*W]
  const auto& in = model_.activations[model_.input];
  const int64_t pixels = in.height * in.width;
  for (int64_t b = 0; b < images; ++b)
    for (int64_t c = 0; c < in.channels; ++c)
      std::copy(input + (b * in.channels + c) * pixels, input + (b * in.channels + c + 1) * pixels,
                acts_[model_.input].begin() + (c * images + b) * pixels);
  using Clock = std::chrono::steady_clock;
  auto t0 = Clock::now();
  for (size_t i = 0; i < model_.ops.size(); ++i) {
    const IntOp& op = model_.ops[i];
    if (fuses_with_next(i)) {
      conv_expand_depthwise(i, &seconds_[i], &seconds_[i + 1]);
      written_[op.output] = options_.keep_activations;
      t0 = Clock::now();
      ++i;
      continue;
    }
    switch (op.kind) {
      case OpKind::kConv: conv(op, i); break;
      case OpKind::kAdd: add(op, i); break;
      case OpKind::kAvgPool: avgpool(op, i); break;
      case OpKind::kLinear: linear(op, i, logits); break;
      case OpKind::kMul: mul(op, i); break;
    }
    auto t1 = Clock::now();
    seconds_[i] += std::chrono::duration<double>(t1 - t0).count();
    t0 = t1;
  }
}

// What every convolution kernel reads and writes, and its requantization into the output planes.
// Planes are per channel [image][H*W]: `in_pixels` and `out_pixels` count all images of the batch.
struct IntegerEngine::ConvPlanes {
  const int16_t* x;
  int16_t* y;
  int64_t in_pixels, out_pixels;
  const int32_t *bias, *mult, *shift;
  int32_t lo, hi, acc_shift;
  kernels::Isa isa;
  const quant::arith::FoldedRequant* folded;  // every channel's, or nullptr (pointwise_dot.h: TileOutput)
  void requantize(const int32_t* acc, int64_t c) const {
    kernels::requantize(acc, out_pixels, acc_shift, bias[c], mult[c], shift[c], lo, hi, y + c * out_pixels, isa);
  }
  // Where the 1x1 tile of output channels [c0, c0 + kTileRows) x pixels [p0, p0 + count) goes.
  kernels::TileOutput tile_output(const IntOp& op, int64_t c0, int64_t p0, int64_t count) const {
    return {bias + c0, mult + c0, shift + c0, acc_shift, lo, hi, y + c0 * out_pixels + p0, out_pixels,
            std::min(kernels::kTileRows, op.out_channels - c0), count, folded != nullptr ? folded + c0 : nullptr};
  }
};

IntegerEngine::ConvPlanes IntegerEngine::conv_planes(const IntOp& op, size_t index) {
  const auto& in = model_.activations[op.input];
  const auto& out = model_.activations[op.output];
  return {acts_[op.input].data(), acts_[op.output].data(), batch_ * in.height * in.width, batch_ * out.height * out.width,
          op.bias.data_ptr<int32_t>(), op.multiplier.data_ptr<int32_t>(), op.right_shift.data_ptr<int32_t>(),
          op.clamp_lo, op.clamp_hi, static_cast<int32_t>(op.acc_shift), isa_,
          folded_[index].empty() ? nullptr : folded_[index].data()};
}

void IntegerEngine::conv(const IntOp& op, size_t index) {
  const ConvPlanes p = conv_planes(op, index);
  int64_t nonzero = static_cast<int64_t>(plus_[index].size() + minus_[index].size());
  if (is_ternary_pointwise(op)) {
    if (isa_ != kernels::Isa::kPortable && ternary_dot_) conv_pointwise_dot(op, index, p);
    else nonzero = conv_ternary_pointwise(op, index, p);
  } else if (is_pointwise(op)) {
    if (isa_ != kernels::Isa::kPortable) conv_pointwise_dot(op, index, p);
    else conv_int8_pointwise(op, p);
  } else {
    conv_general(op, p);
  }
  count_conv(op, index, nonzero, p.out_pixels);
  if (op.table.defined()) apply_table(index, op.out_channels * p.out_pixels);
}

// What a convolution executed, by the reference kernels' arithmetic. Ternary 1x1 layers: additions
// of the non-zero weights' inputs (`nonzero` weights), whichever path computed the same integers.
void IntegerEngine::count_conv(const IntOp& op, size_t index, int64_t nonzero, int64_t out_pixels) {
  OpCounts& counts = counts_[index].counts;
  if (is_ternary_pointwise(op)) {
    counts.ternary_adds += nonzero * out_pixels;
    counts.int32_adds += op.out_channels * out_pixels;  // bias
  } else if (is_pointwise(op)) {
    counts.int8_mults += op.out_channels * op.in_channels * out_pixels;
    counts.int32_adds += op.out_channels * (op.in_channels * out_pixels + out_pixels);  // accumulate + bias
  } else {
    const int64_t macs = op.out_channels * (op.in_channels / op.groups) * op.kernel * op.kernel * out_pixels;
    counts.int8_mults += macs;
    counts.int32_adds += macs + op.out_channels * out_pixels;
  }
  counts.requant_mults += op.out_channels * out_pixels;  // fixed-point multiply
  counts.roundings += op.out_channels * out_pixels;
}

// An activation computed by its table: each requantized (pre-activation) code becomes table[code + 128].
void IntegerEngine::apply_table(size_t index, int64_t n) {
  const IntOp& op = model_.ops[index];
  const int16_t* table = tables_[index].data();
  int16_t* y = acts_[op.output].data();
  for_channels(parallel_, n / 4096 + 1, 4096, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0 * 4096, end = std::min(n, i1 * 4096); i < end; ++i) y[i] = table[y[i] + 128];
  });
  counts_[index].counts.lookups += n;
}

// Squeeze-and-excitation: each channel of each image scaled by its gate code, then requantized.
void IntegerEngine::mul(const IntOp& op, size_t index) {
  const auto& out = model_.activations[op.output];
  const int64_t pixels = out.height * out.width, planes = out.channels * batch_;
  const int16_t* x = acts_[op.input].data();
  const int16_t* gate = acts_[op.input2].data();  // [C][image]
  int16_t* y = acts_[op.output].data();
  const quant::arith::CodeGrid grid = quant::arith::activation_grid(out.is_unsigned);
  const quant::arith::FixedPointMultiplier m{static_cast<int32_t>(op.mul_multiplier), static_cast<int>(op.mul_shift)};
  for_channels(parallel_, planes, pixels, [&](int64_t q0, int64_t q1) {
    for (int64_t q = q0; q < q1; ++q)
      for (int64_t p = 0; p < pixels; ++p)
        y[q * pixels + p] = static_cast<int16_t>(quant::arith::mul_requantize(x[q * pixels + p], gate[q], m, grid.lo, grid.hi));
  });
  OpCounts& counts = counts_[index].counts;
  // Feature code x gate code, counted as a multiply-accumulate (the energy model charges every int8
  // multiply with its accumulation; here that add is an overcount of one per value).
  counts.int8_mults += planes * pixels;
  counts.int32_adds += planes * pixels;
  counts.requant_mults += planes * pixels;
  counts.roundings += planes * pixels;
}

int64_t IntegerEngine::conv_ternary_pointwise(const IntOp& op, size_t index, const ConvPlanes& p) {
  const auto& po = plus_offsets_[index];
  const auto& mo = minus_offsets_[index];
  const int32_t* plus = plus_[index].data();
  const int32_t* minus = minus_[index].data();
  const int64_t nonzero = static_cast<int64_t>(plus_[index].size() + minus_[index].size());
  const int64_t max_pixels = max_pixels_ * batch_;
  for_channels(parallel_, op.out_channels, nonzero / std::max<int64_t>(1, op.out_channels) * p.out_pixels,
               [&](int64_t c0, int64_t c1) {
                 int32_t* acc = thread_acc(max_pixels);
                 for (int64_t c = c0; c < c1; ++c) {
                   kernels::ternary_pointwise(p.x, p.in_pixels, plus + po[c], po[c + 1] - po[c], minus + mo[c],
                                              mo[c + 1] - mo[c], acc, p.isa);
                   p.requantize(acc, c);
                 }
               });
  return nonzero;
}

void IntegerEngine::conv_int8_pointwise(const IntOp& op, const ConvPlanes& p) {
  const int8_t* w = op.weight.data_ptr<int8_t>();
  const int64_t max_pixels = max_pixels_ * batch_;
  for_channels(parallel_, op.out_channels, op.in_channels * p.out_pixels, [&](int64_t c0, int64_t c1) {
    int32_t* acc = thread_acc(max_pixels);
    for (int64_t c = c0; c < c1; ++c) {
      kernels::int8_pointwise(p.x, p.in_pixels, op.in_channels, w + c * op.in_channels, acc);
      p.requantize(acc, c);
    }
  });
}

namespace {

// Runs the 1x1 layer's tiles of kTileRows output channels x kTilePixels pixels, pixel blocks
// outermost. Each thread packs the input of each pixel block it reaches, pack(p0, count, block), into
// a buffer of its own and runs that block's tiles on it, tile(c0, block, padded, vectors, out): no
// pass (and no barrier) for packing, and the packed block stays in cache. Threads that share a block
// both pack it; the tiles and their integers are the same either way.
template <typename Code, typename Planes, typename Pack, typename Tile>
void for_pointwise_blocks(bool parallel, const IntOp& op, const Planes& p, int64_t block_codes, const Pack& pack,
                          const Tile& tile) {
  using kernels::kTilePixels, kernels::kTileRows;
  const int64_t pixels = p.in_pixels;
  const int64_t row_blocks = (op.out_channels + kTileRows - 1) / kTileRows;
  const int64_t pixel_blocks = (pixels + kTilePixels - 1) / kTilePixels;
  for_channels(parallel, row_blocks * pixel_blocks, block_codes * kTileRows, [&](int64_t t0, int64_t t1) {
    thread_local std::vector<Code> block;
    if (static_cast<int64_t>(block.size()) < block_codes) block.resize(block_codes);
    int64_t packed = -1;  // the pixel block in `block`
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t c0 = (t % row_blocks) * kTileRows, b = t / row_blocks, p0 = b * kTilePixels;
      const int64_t count = std::min(kTilePixels, pixels - p0), padded = kernels::padded_pixels(count);
      if (b != packed) pack(p0, count, block.data()), packed = b;
      tile(c0, block.data(), padded, static_cast<int>(padded / 16), p.tile_output(op, c0, p0, count));
    }
  });
}

}  // namespace

// 1x1 convolution as dense dot products over packed channel pairs (pointwise_dot.h), each tile
// requantized straight from its accumulators; the 8-bit layout where the engine packed it.
void IntegerEngine::conv_pointwise_dot(const IntOp& op, size_t index, const ConvPlanes& p) {
  if (!weight_quads_[index].words.empty()) return conv_pointwise_quads(op, index, p);
  const int64_t pairs = kernels::channel_pairs(op.in_channels);
  const int32_t* weights = weight_pairs_[index].data();
  for_pointwise_blocks<int16_t>(
      parallel_, op, p, pairs * kernels::kTilePixels * 2,
      [&](int64_t p0, int64_t count, int16_t* block) { kernels::pack_input_pairs(p.x, p.in_pixels, op.in_channels, p0, count, block); },
      [&](int64_t c0, const int16_t* block, int64_t padded, int vectors, const kernels::TileOutput& out) {
        kernels::pointwise_tile_requantized(block, padded, pairs, weights + c0 * pairs, 0, vectors, out, isa_);
      });
}

// The same on 8-bit codes, four channels per vpdpbusd lane (pointwise_dot.h); signed inputs offset
// by +128 and corrected by each channel's accumulator start.
void IntegerEngine::conv_pointwise_quads(const IntOp& op, size_t index, const ConvPlanes& p) {
  const int64_t quads = kernels::channel_quads(op.in_channels);
  const bool offset = !model_.activations[op.input].is_unsigned;
  const kernels::QuadWeights& w = weight_quads_[index];
  for_pointwise_blocks<uint8_t>(
      parallel_, op, p, quads * kernels::kTilePixels * 4,
      [&](int64_t p0, int64_t count, uint8_t* block) {
        kernels::pack_input_quads(p.x, p.in_pixels, op.in_channels, offset, p0, count, block, isa_);
      },
      [&](int64_t c0, const uint8_t* block, int64_t padded, int vectors, const kernels::TileOutput& out) {
        kernels::pointwise_quad_tile_requantized(block, padded, quads, w.words.data() + c0 * quads, w.start.data() + c0, 0,
                                                 vectors, out, isa_);
      });
}

// A 1x1 convolution on the 8-bit path followed by the depthwise convolution that alone reads its
// output (MobileNet's expand -> depthwise), run block of channels by block of channels: the tiles
// write each block's expanded planes as bytes into the thread's own buffer, and the depthwise
// kernel on 8-bit codes convolves them from there while they are still in the core's cache,
// instead of the whole expanded activation (several MB at 56-112 px) going out to memory as int16
// codes and back. The same kernels on the same codes: the same integers.
bool IntegerEngine::fuses_with_next(size_t index) const {
  // Depthwise layers that conv_general runs with images innermost stay unfused.
  return fuse_ && fusable_[index] &&
         !runs_images_inner(model_.ops[index + 1], batch_, model_.activations[model_.ops[index + 1].output].width, isa_);
}

// The batch-independent part of fuses_with_next (the constructor's, once per op).
bool IntegerEngine::fusable(size_t index) const {
  if (index + 1 >= model_.ops.size() || weight_quads_[index].words.empty() || !reads_once_[index]) return false;
  const IntOp& op = model_.ops[index];
  const IntOp& next = model_.ops[index + 1];
  if (op.kind != OpKind::kConv || op.table.defined() || (op.ternary && !ternary_dot_)) return false;
  if (next.kind != OpKind::kConv || !is_depthwise(next) || next.input != op.output || next.kernel != 3) return false;
  for (int64_t c = 0; c < next.out_channels; ++c)  // every channel on the 8-bit depthwise kernel
    if (!kernels::depthwise_bytes_apply(next.stride, {static_cast<int32_t>(next.acc_shift), next.bias.data_ptr<int32_t>()[c],
                                                      next.multiplier.data_ptr<int32_t>()[c],
                                                      next.right_shift.data_ptr<int32_t>()[c], next.clamp_lo, next.clamp_hi},
                                        isa_))
      return false;
  return true;
}

void IntegerEngine::conv_expand_depthwise(size_t index, double* expand_seconds, double* depthwise_seconds) {
  using kernels::kTilePixels, kernels::kTileRows;
  const IntOp& op = model_.ops[index];
  const IntOp& dw = model_.ops[index + 1];
  const ConvPlanes p = conv_planes(op, index), pd = conv_planes(dw, index + 1);
  const int64_t quads = kernels::channel_quads(op.in_channels), block_codes = quads * kTilePixels * 4;
  const int64_t pixels = p.in_pixels, pixel_blocks = (pixels + kTilePixels - 1) / kTilePixels;
  const bool offset = !model_.activations[op.input].is_unsigned;
  // The whole input packed once (the blocks of conv_pointwise_quads, side by side).
  if (static_cast<int64_t>(packed_.size()) < pixel_blocks * block_codes) packed_.resize(pixel_blocks * block_codes);
  uint8_t* packed = packed_.data();
  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  for_channels(parallel_, pixel_blocks, block_codes, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      kernels::pack_input_quads(p.x, pixels, op.in_channels, offset, b * kTilePixels,
                                std::min(kTilePixels, pixels - b * kTilePixels), packed + b * block_codes, isa_);
  });
  const int64_t rows = fused_block_rows(op.out_channels, p.out_pixels);
  const int64_t channel_blocks = (op.out_channels + rows - 1) / rows;
  const kernels::QuadWeights& w = weight_quads_[index];
  const bool byte_offset = !model_.activations[op.output].is_unsigned;
  std::atomic<int64_t> tile_ns{0}, depthwise_ns{0};
  for_channels(parallel_, channel_blocks, rows * (quads + 9) * p.out_pixels, [&](int64_t k0, int64_t k1) {
    uint8_t* block = thread_bytes<1>(rows * p.out_pixels);  // [channel - c0][image][pixel]
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t c0 = k * rows, c1 = std::min(op.out_channels, c0 + rows);
      const auto t1 = Clock::now();
      for (int64_t b = 0; b < pixel_blocks; ++b) {
        const int64_t p0 = b * kTilePixels, count = std::min(kTilePixels, pixels - p0);
        const int64_t padded = kernels::padded_pixels(count);
        for (int64_t r = c0; r < c1; r += kTileRows) {
          kernels::TileOutput out = p.tile_output(op, r, p0, count);
          out.out_bytes = block + (r - c0) * p.out_pixels + p0;
          out.byte_offset = byte_offset;
          kernels::pointwise_quad_tile_requantized(packed + b * block_codes, padded, quads, w.words.data() + r * quads,
                                                   w.start.data() + r, 0, static_cast<int>(padded / 16), out, isa_);
        }
      }
      if (options_.keep_activations)
        for (int64_t i = 0; i < (c1 - c0) * p.out_pixels; ++i)
          p.y[c0 * p.out_pixels + i] = static_cast<int16_t>(block[i] - (byte_offset ? 128 : 0));
      const auto t2 = Clock::now();
      depthwise_channels(dw, pd, c0, c1, block);
      tile_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(t2 - t1).count();
      depthwise_ns += std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t2).count();
    }
  });
  // Wall time, shared between the two ops as their threads' time was.
  const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
  const double tiles = static_cast<double>(tile_ns), convs = static_cast<double>(depthwise_ns);
  *expand_seconds += wall * (tiles + convs > 0 ? tiles / (tiles + convs) : 0.5);
  *depthwise_seconds += wall * (tiles + convs > 0 ? convs / (tiles + convs) : 0.5);
  count_conv(op, index, static_cast<int64_t>(plus_[index].size() + minus_[index].size()), p.out_pixels);
  count_conv(dw, index + 1, 0, pd.out_pixels);
  if (dw.table.defined()) apply_table(index + 1, dw.out_channels * pd.out_pixels);
}

// Output channels per block of conv_expand_depthwise: a multiple of the tile's rows whose expanded
// planes (bytes) take at most about 128 KB, and, when the channels are split over threads,
// as many blocks per thread (else up to one block's time is lost waiting at the end of the layer).
int64_t IntegerEngine::fused_block_rows(int64_t channels, int64_t out_pixels) const {
  using kernels::kTileRows;
  constexpr int64_t kBlockBytes = int64_t{128} << 10;
  const int64_t widest = std::clamp<int64_t>(kBlockBytes / out_pixels / kTileRows * kTileRows, kTileRows, 32);
  const int64_t threads = parallel_ ? at::get_num_threads() : 1;
  if (threads <= 1) return widest;
  for (int64_t rows = widest; rows >= kTileRows; rows -= kTileRows)
    if (((channels + rows - 1) / rows) % threads == 0) return rows;
  return widest;
}

// General (stem) and depthwise convolution over zero-padded copies of the input planes: every
// output takes the full k*k*(in/groups) multiply-accumulates, as the analytic count says. Narrow
// outputs of a batch run with images innermost (vectors over images). Each padded plane is followed
// by kPlaneSlack zeros that the kernels may read. Depthwise layers with planes innermost take
// conv_depthwise; other layers pad every channel first.
void IntegerEngine::conv_general(const IntOp& op, const ConvPlanes& p) {
  const auto& in = model_.activations[op.input];
  const auto& out = model_.activations[op.output];
  const int64_t pad = op.padding, images = batch_;
  const int64_t pw = in.width + 2 * pad, plane = (in.height + 2 * pad) * pw;
  const bool images_inner = runs_images_inner(op, images, out.width, isa_);
  if (is_depthwise(op) && !images_inner) return conv_depthwise(op, p);
  if (!images_inner && conv_bytes(op, p)) return;
  const int64_t stride = images_inner ? plane : plane + kernels::kPlaneSlack;  // per [channel][image] plane
  int16_t* padded = padded_.data();
  // Padded planes: [C][image][row][column], or [C][row][column][image] with images inner.
  auto pad_channels = [&](int64_t c0, int64_t c1) {
    std::fill(padded + c0 * images * stride, padded + c1 * images * stride, 0);
    for (int64_t ic = c0; ic < c1; ++ic)
      for (int64_t b = 0; b < images; ++b) {
        const int16_t* src = p.x + (ic * images + b) * in.height * in.width;
        for (int64_t r = 0; r < in.height; ++r) {
          const int64_t row = (r + pad) * pw + pad;
          if (!images_inner) {  // whole rows, as one image's plane is contiguous
            std::copy(src + r * in.width, src + (r + 1) * in.width, padded + (ic * images + b) * stride + row);
            continue;
          }
          for (int64_t col = 0; col < in.width; ++col)
            padded[(ic * plane + row + col) * images + b] = src[r * in.width + col];
        }
      }
  };
  const int8_t* w = op.weight.data_ptr<int8_t>();
  const int64_t k = op.kernel, s = op.stride, out_pixels = out.height * out.width;
  const int64_t in_per_group = op.in_channels / op.groups, out_per_group = op.out_channels / op.groups;
  auto convolve = [&](int64_t c0, int64_t c1) {  // each image's plane of output channel c from its group's planes
    int32_t* acc = thread_acc(out_pixels);
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t first = (c / out_per_group) * in_per_group;  // the group's first input channel
      const kernels::PlaneRequant r{p.acc_shift, p.bias[c], p.mult[c], p.shift[c], p.lo, p.hi};
      for (int64_t b = 0; b < images; ++b)
        kernels::conv_planes_requantized(padded + (first * images + b) * stride, images * stride, in_per_group, pw,
                                         w + c * in_per_group * k * k, k, s, out.height, out.width, r, acc,
                                         p.y + c * p.out_pixels + b * out_pixels, p.isa);
    }
  };
  for_channels(parallel_, in.channels, images * plane, pad_channels);
  if (images_inner) return conv_images_inner(op, p, plane);
  for_channels(parallel_, op.out_channels, in_per_group * k * k * p.out_pixels, convolve);
}

// conv_general on 8-bit codes (kernels::conv_planes3_bytes: 3x3, stride 1 or 2, up to 4 input
// planes per group, AVX-512 VNNI): the stem. Every channel's planes are padded once into bytes
// ([C][image][plane], padding 0, or 128 for signed codes), then each output plane is convolved from
// its group's. False, with nothing done, where some channel cannot run there.
bool IntegerEngine::conv_bytes(const IntOp& op, const ConvPlanes& p) {
  const auto& in = model_.activations[op.input];
  const auto& out = model_.activations[op.output];
  const int64_t in_per_group = op.in_channels / op.groups, out_per_group = op.out_channels / op.groups;
  if (op.kernel != 3 || in_per_group > 4) return false;
  for (int64_t c = 0; c < op.out_channels; ++c)
    if (!kernels::depthwise_bytes_apply(op.stride, {p.acc_shift, p.bias[c], p.mult[c], p.shift[c], p.lo, p.hi}, isa_))
      return false;
  const int64_t pad = op.padding, images = batch_, pw = in.width + 2 * pad;
  const int64_t stride = (in.height + 2 * pad) * pw + kernels::kByteSlack;  // per [channel][image] plane
  const bool offset = !in.is_unsigned;
  if (static_cast<int64_t>(padded_bytes_.size()) < in.channels * images * stride)
    padded_bytes_.resize(in.channels * images * stride);
  uint8_t* padded = padded_bytes_.data();
  for_channels(parallel_, in.channels, images * stride, [&](int64_t c0, int64_t c1) {
    std::fill(padded + c0 * images * stride, padded + c1 * images * stride, offset ? 128 : 0);
    for (int64_t q = c0 * images; q < c1 * images; ++q)  // plane q: channel q / images, image q % images
      kernels::copy_rows_bytes(p.x + q * in.height * in.width, in.width, in.height, in.width,
                               padded + q * stride + pad * pw + pad, pw, offset, isa_);
  });
  const int8_t* w = op.weight.data_ptr<int8_t>();
  const int64_t out_pixels = out.height * out.width;
  for_channels(parallel_, op.out_channels, in_per_group * 9 * p.out_pixels, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t first = (c / out_per_group) * in_per_group;  // the group's first input channel
      const kernels::PlaneRequant r{p.acc_shift, p.bias[c], p.mult[c], p.shift[c], p.lo, p.hi};
      for (int64_t b = 0; b < images; ++b)
        kernels::conv_planes3_bytes(padded + (first * images + b) * stride, images * stride, in_per_group, pw,
                                    w + c * in_per_group * 9, offset, op.stride, out.height, out.width, r,
                                    p.y + c * p.out_pixels + b * out_pixels, isa_);
    }
  });
  return true;
}

// A depthwise layer, one pass per channel (depthwise_channels), channels split over the threads.
void IntegerEngine::conv_depthwise(const IntOp& op, const ConvPlanes& p) {
  const auto& in = model_.activations[op.input];
  const auto& out = model_.activations[op.output];
  const int64_t plane = (in.height + 2 * op.padding) * (in.width + 2 * op.padding);
  for_channels(parallel_, op.out_channels, batch_ * (plane + op.kernel * op.kernel * out.height * out.width),
               [&](int64_t c0, int64_t c1) { depthwise_channels(op, p, c0, c1); });
}

// Depthwise channels [c0, c1) of every image: each [image] plane is padded into the calling thread's
// own buffer (which stays in cache; its border and slack stay zero, as every plane rewrites the same
// interior), then convolved and requantized from there (kernels::depthwise_plane, or the 8-bit
// kernels::depthwise_plane3_bytes on AVX-512 VNNI). With `bytes` the input codes come as bytes,
// [c - c0][image][pixel] (conv_expand_depthwise's block; every channel then takes the 8-bit kernel).
void IntegerEngine::depthwise_channels(const IntOp& op, const ConvPlanes& p, int64_t c0, int64_t c1,
                                       const uint8_t* bytes) {
  const auto& in = model_.activations[op.input];
  const auto& out = model_.activations[op.output];
  const int64_t pad = op.padding, pw = in.width + 2 * pad, plane = (in.height + 2 * pad) * pw;
  const int64_t k = op.kernel, in_pixels = in.height * in.width, out_pixels = out.height * out.width;
  const int8_t* w = op.weight.data_ptr<int8_t>();
  const bool offset = !in.is_unsigned;  // signed codes as bytes: +128, and the padding at 128
  int16_t* padded = nullptr;
  int32_t* acc = thread_acc(out_pixels);
  uint8_t* padded_bytes = nullptr;  // the 8-bit kernel's copy (kernels::depthwise_plane3_bytes)
  for (int64_t c = c0; c < c1; ++c) {
    const kernels::PlaneRequant r{p.acc_shift, p.bias[c], p.mult[c], p.shift[c], p.lo, p.hi};
    const bool on_bytes = k == 3 && kernels::depthwise_bytes_apply(op.stride, r, p.isa);
    if (on_bytes && padded_bytes == nullptr) {
      padded_bytes = thread_bytes<0>(plane + kernels::kByteSlack);
      std::fill(padded_bytes, padded_bytes + plane + kernels::kByteSlack, offset ? 128 : 0);
    }
    if (!on_bytes && padded == nullptr) {
      padded = thread_codes(plane + kernels::kPlaneSlack);
      std::fill(padded, padded + plane + kernels::kPlaneSlack, 0);
    }
    for (int64_t b = 0; b < batch_; ++b) {
      const int16_t* codes = p.x + (c * batch_ + b) * in_pixels;
      int16_t* plane_out = p.y + c * p.out_pixels + b * out_pixels;
      if (bytes != nullptr) {
        const uint8_t* src = bytes + ((c - c0) * batch_ + b) * in_pixels;
        for (int64_t row = 0; row < in.height; ++row)
          std::memcpy(padded_bytes + (row + pad) * pw + pad, src + row * in.width, in.width);
      } else if (on_bytes) {
        kernels::copy_rows_bytes(codes, in.width, in.height, in.width, padded_bytes + pad * pw + pad, pw, offset, p.isa);
      }
      if (on_bytes) {
        kernels::depthwise_plane3_bytes(padded_bytes, pw, w + c * k * k, offset, op.stride, out.height, out.width, r,
                                        plane_out, p.isa);
        continue;
      }
      kernels::copy_rows(codes, in.width, in.height, in.width, padded + pad * pw + pad, pw, p.isa);
      kernels::depthwise_plane(padded, pw, w + c * k * k, k, op.stride, out.height, out.width, r, acc, plane_out, p.isa);
    }
  }
}

// conv_general over planes [C][row][column][image]: accumulates [pixel][image], then transposes to
// the activation's [image][pixel] for requantization.
void IntegerEngine::conv_images_inner(const IntOp& op, const ConvPlanes& p, int64_t plane) {
  const auto& in = model_.activations[op.input];
  const auto& out = model_.activations[op.output];
  const int8_t* w = op.weight.data_ptr<int8_t>();
  const int64_t k = op.kernel, s = op.stride, images = batch_, pw = in.width + 2 * op.padding;
  const int64_t out_pixels = out.height * out.width;
  const int64_t in_per_group = op.in_channels / op.groups, out_per_group = op.out_channels / op.groups;
  const int16_t* padded = padded_.data();
  const int64_t max_pixels = max_pixels_ * images;
  for_channels(parallel_, op.out_channels, in_per_group * k * k * p.out_pixels, [&](int64_t c0, int64_t c1) {
    int32_t* acc = thread_acc(2 * max_pixels);
    int32_t* by_image = acc + max_pixels;
    for (int64_t c = c0; c < c1; ++c) {
      const int64_t g = c / out_per_group;
      std::fill(acc, acc + p.out_pixels, 0);
      for (int64_t ci = 0; ci < in_per_group; ++ci) {
        const int64_t ic = g * in_per_group + ci;
        kernels::conv_plane_batched(padded + ic * plane * images, pw, images, w + (c * in_per_group + ci) * k * k, k,
                                    s, out.height, out.width, acc, p.isa);
      }
      for (int64_t px = 0; px < out_pixels; ++px)
        for (int64_t b = 0; b < images; ++b) by_image[b * out_pixels + px] = acc[px * images + b];
      p.requantize(by_image, c);
    }
  });
}

void IntegerEngine::add(const IntOp& op, size_t index) {
  const auto& out = model_.activations[op.output];
  const int16_t* a = acts_[op.input].data();
  const int16_t* b = acts_[op.input2].data();
  int16_t* y = acts_[op.output].data();
  const int64_t n = batch_ * out.channels * out.height * out.width;
  const quant::arith::CodeGrid grid = quant::arith::activation_grid(out.is_unsigned);
  for_channels(parallel_, n / 4096 + 1, 4096, [&](int64_t i0, int64_t i1) {
    const int64_t begin = i0 * 4096, end = std::min(n, i1 * 4096);
    kernels::add_requantize(a + begin, b + begin, end - begin, op.add_mult_a, op.add_mult_b, static_cast<int>(op.add_shift),
                            grid.lo, grid.hi, y + begin, isa_);
  });
  OpCounts& counts = counts_[index].counts;
  counts.requant_mults += 2 * n;
  counts.int32_adds += n;
  counts.roundings += n;
}

void IntegerEngine::avgpool(const IntOp& op, size_t index) {
  const auto& in = model_.activations[op.input];
  const int64_t pixels = in.height * in.width, planes = in.channels * batch_;
  const int16_t* x = acts_[op.input].data();
  int16_t* y = acts_[op.output].data();  // [C][image]
  for (int64_t q = 0; q < planes; ++q) {
    int64_t sum = 0;
    for (int64_t p = 0; p < pixels; ++p) sum += x[q * pixels + p];
    y[q] = static_cast<int16_t>(quant::arith::divide_round_half_even(sum, pixels));
  }
  counts_[index].counts.int32_adds += planes * pixels;
  counts_[index].counts.requant_mults += planes;  // the division by H*W
  counts_[index].counts.roundings += planes;
}

// The classifier reads the pooled [C][image] codes; logits are [image][classes].
void IntegerEngine::linear(const IntOp& op, size_t index, int32_t* logits) {
  const int16_t* x = acts_[op.input].data();
  const int8_t* w = op.weight.data_ptr<int8_t>();
  const int32_t* bias = op.bias.data_ptr<int32_t>();
  const int64_t images = batch_, in = op.in_channels, classes = op.out_channels;
  if (index < classifier_quads_.size() && !classifier_quads_[index].words.empty()) {
    linear_quads(op, index, logits);
  } else if (isa_ != kernels::Isa::kPortable) {
    linear_dot(op, index, logits);
  } else if (images < 8) {  // a few images: one dot product per class, over the (strided) inputs
    for (int64_t b = 0; b < images; ++b)
      for (int64_t c = 0; c < classes; ++c) {
        int32_t acc = 0;
        for (int64_t i = 0; i < in; ++i) acc += static_cast<int32_t>(w[c * in + i]) * x[i * images + b];
        logits[b * classes + c] = acc * (int32_t{1} << op.acc_shift) + bias[c];  // fits int32: the loader checks
      }
  } else {
    linear_images_inner(op, logits);
  }
  OpCounts& counts = counts_[index].counts;
  counts.int8_mults += images * op.in_channels * op.out_channels;
  counts.int32_adds += images * (op.in_channels * op.out_channels + op.out_channels);
}

// The classifier on the dot-product kernel, classes as the vector lanes: tiles of 4 images x 64
// classes; the images' codes are packed as the tile's weight pairs.
void IntegerEngine::linear_dot(const IntOp& op, size_t index, int32_t* logits) {
  const int16_t* x = acts_[op.input].data();  // [C][image]
  const int32_t* bias = op.bias.data_ptr<int32_t>();
  const int64_t images = batch_, in = op.in_channels, classes = op.out_channels;
  const int64_t pairs = kernels::channel_pairs(in), padded = kernels::padded_pixels(classes);
  const int64_t image_blocks = (images + kernels::kTileRows - 1) / kernels::kTileRows;
  int32_t* words = image_words_.data();
  auto code = [&](int64_t channel, int64_t image) {
    return channel < in && image < images ? x[channel * images + image] : int16_t{0};
  };
  for (int64_t ib = 0; ib < image_blocks; ++ib)
    for (int64_t k = 0; k < pairs; ++k)
      for (int64_t r = 0; r < kernels::kTileRows; ++r) {
        const int64_t image = ib * kernels::kTileRows + r;
        words[(ib * pairs + k) * kernels::kTileRows + r] = kernels::int16_pair(code(2 * k, image), code(2 * k + 1, image));
      }
  const int64_t class_blocks = (padded + kernels::kTilePixels - 1) / kernels::kTilePixels;
  const int16_t* weights = classifier_pairs_[index].data();
  for_channels(parallel_, image_blocks * class_blocks, kernels::kTileRows * kernels::kTilePixels * pairs,
               [&](int64_t t0, int64_t t1) {
                 alignas(64) int32_t acc[kernels::kTileRows * kernels::kTilePixels];
                 for (int64_t t = t0; t < t1; ++t) {
                   const int64_t ib = t % image_blocks, p0 = (t / image_blocks) * kernels::kTilePixels;
                   const int vectors = static_cast<int>((std::min(kernels::kTilePixels, padded - p0) + 15) / 16);
                   kernels::pointwise_tile(weights, padded, pairs, words + ib * pairs * kernels::kTileRows, p0, vectors,
                                           acc, isa_);
                   for (int64_t r = 0; r < kernels::kTileRows && ib * kernels::kTileRows + r < images; ++r) {
                     int32_t* out = logits + (ib * kernels::kTileRows + r) * classes;
                     for (int64_t j = p0; j < std::min(classes, p0 + kernels::kTilePixels); ++j)
                       out[j] = acc[r * kernels::kTilePixels + j - p0] * (int32_t{1} << op.acc_shift) + bias[j];  // fits int32: the loader checks
                   }
                 }
               });
}

// The classifier on 8-bit codes, image by image, classes as the vector lanes (pointwise_dot.h).
void IntegerEngine::linear_quads(const IntOp& op, size_t index, int32_t* logits) {
  const kernels::ClassifierQuads& q = classifier_quads_[index];
  const int16_t* x = acts_[op.input].data();  // [C][image]
  const int32_t* bias = op.bias.data_ptr<int32_t>();
  const int64_t images = batch_, classes = op.out_channels;
  for_channels(parallel_, images, op.in_channels * classes, [&](int64_t b0, int64_t b1) {
    int32_t* acc = thread_acc(kernels::padded_pixels(classes));
    for (int64_t b = b0; b < b1; ++b) {
      kernels::classifier_quads(q, x + b, images, acc, isa_);
      for (int64_t c = 0; c < classes; ++c)
        logits[b * classes + c] = acc[c] * (int32_t{1} << op.acc_shift) + bias[c];  // fits int32: the loader checks
    }
  });
}

// Per class, the inner loop runs over the batch's images (contiguous in [C][image]) and vectorizes.
void IntegerEngine::linear_images_inner(const IntOp& op, int32_t* logits) {
  const int16_t* x = acts_[op.input].data();
  const int8_t* w = op.weight.data_ptr<int8_t>();
  const int32_t* bias = op.bias.data_ptr<int32_t>();
  const int64_t images = batch_, in = op.in_channels, classes = op.out_channels;
  for_channels(parallel_, classes, in * images, [&](int64_t c0, int64_t c1) {
    int32_t* acc = thread_acc(images);
    for (int64_t c = c0; c < c1; ++c) {
      std::fill(acc, acc + images, 0);
      for (int64_t i = 0; i < in; ++i) {
        const int32_t wi = w[c * in + i];
        const int16_t* xi = x + i * images;
        for (int64_t b = 0; b < images; ++b) acc[b] += wi * xi[b];
      }
      for (int64_t b = 0; b < images; ++b)
        logits[b * classes + c] = acc[b] * (int32_t{1} << op.acc_shift) + bias[c];  // fits int32: the loader checks
    }
  });
}

}  // namespace prom::infer
