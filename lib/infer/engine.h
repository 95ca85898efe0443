// The integer engine: runs an exported model with integer arithmetic only, from the quantized input
// to the int32 logits. Ternary pointwise convolutions use additions and subtractions only; stem,
// depthwise, last_conv and classifier use int8 multiply-accumulate; requantization uses fixed-point
// multipliers; ReLU and ReLU6 are clamps, other activations lookup tables; residual adds,
// squeeze-and-excitation scaling and global average pooling stay in integers.
// It counts the operations it executes, per layer, for the energy model.
#pragma once
#include <memory>
#include <vector>

#include "graph/int_model.h"
#include "infer/op_counts.h"
#include "infer/pointwise_dot.h"

namespace prom::infer {

struct EngineOptions {
  bool allow_avx2 = true;  // false forces the portable kernels (the tests run every path)
  bool parallel = true;    // convolutions split output channels over LibTorch's intra-op threads
  // Images run together: activations are laid out [C][image][H*W], so a 1x1 convolution sees
  // images x pixels values per channel (full vectors even at 2x2 pixels) and each layer hands work to
  // the threads once per batch, not once per image. Capped by activation memory (see engine.cpp).
  int64_t max_batch = 256;
  // With `parallel`, a batch of at least 2 images per thread runs image-parallel instead: each thread
  // takes a contiguous share of the images through the whole network on an engine of its own
  // (channels serial), with no barrier per layer and one image set's activations per thread. The
  // kernels are the same, so the integers are too.
  bool image_parallel = true;
  // false keeps AVX-512 VNNI off (AVX2 kernels on a CPU that has both); the tests run every path.
  bool allow_avx512 = true;
  // false runs ternary 1x1 layers on the add/sub kernel over index lists (kernels.h, AVX2 or
  // portable) instead of the dot products, for comparing the two (`prom-bench infer --ternary-kernel`).
  bool ternary_dot = true;
  // false keeps 1x1 dot products on int16 channel pairs (vpdpwssd) where AVX-512 VNNI would run them
  // on 8-bit codes (vpdpbusd), for comparing the two (`prom-bench infer --dot-codes`).
  bool byte_dot = true;
  // false runs an expanding 1x1 layer and the depthwise layer after it one after the other, each
  // over all channels, instead of together block of channels by block (engine.cpp:
  // conv_expand_depthwise; the 8-bit path only), for comparing the two (`prom-bench infer --no-fuse`).
  bool fuse_expand_depthwise = true;
  // Fused expand layers (above) hand their codes to the depthwise layer as bytes in cache and do not
  // write their own activation, which activation() then refuses; true writes it as well (the tests
  // compare every layer's codes).
  bool keep_activations = false;
};

class IntegerEngine {
 public:
  explicit IntegerEngine(graph::IntModel model, EngineOptions options = {});

  // The only floating-point step: normalised images [N, 3, H, W] -> integer codes at the input scale.
  torch::Tensor quantize_input(const torch::Tensor& images) const;  // int16 [N, 3, H, W]
  // Integer-only inference: int32 logits [N, classes] (accumulator units, bias included).
  torch::Tensor run(const torch::Tensor& codes);
  // run() scaled by each class's output step: float logits comparable to the fake-quant model's.
  torch::Tensor logits(const torch::Tensor& images);

  const graph::IntModel& model() const { return model_; }
  // Operations executed since construction or reset_counts(), per op of the graph.
  const std::vector<LayerCounts>& counts() const { return counts_; }
  void reset_counts();
  // Wall-clock seconds spent in each op of the graph since construction or reset_counts().
  const std::vector<double>& op_seconds() const { return seconds_; }
  // The kernels that run: "avx512-vnni" and "avx2" compute 1x1 convolutions as dense dot products
  // (ternary codes included); "portable" runs the reference kernels (ternary: additions only).
  const char* kernel_name() const { return kernels::isa_name(isa_); }
  // How 1x1 convolutions run: "vpdpbusd, 8-bit codes", "vpdpwssd, int16 pairs", "madd, int16 pairs"
  // (AVX2), or "reference kernels" (portable; ternary layers then take additions only).
  const char* pointwise_kernel_name() const;
  // Integer codes of graph activation `id` for the last image of the last run (planes [C][H*W]); for
  // tests. Throws for a fused expand layer's output unless EngineOptions::keep_activations.
  std::vector<int16_t> activation(size_t id) const;
  // Images per batch that run() processes together.
  int64_t batch_capacity() const { return capacity_; }

 private:
  void pack_weights(size_t index);
  void run_batch(const int16_t* input, int64_t images, int32_t* logits);
  void run_image_parallel(const int16_t* input, int64_t images, int32_t* logits, int threads);
  struct ConvPlanes;
  ConvPlanes conv_planes(const graph::IntOp& op, size_t index);
  void conv(const graph::IntOp& op, size_t index);
  void count_conv(const graph::IntOp& op, size_t index, int64_t nonzero, int64_t out_pixels);
  bool fuses_with_next(size_t index) const;
  bool fusable(size_t index) const;
  void conv_expand_depthwise(size_t index, double* expand_seconds, double* depthwise_seconds);
  int64_t fused_block_rows(int64_t channels, int64_t out_pixels) const;
  int64_t conv_ternary_pointwise(const graph::IntOp& op, size_t index, const ConvPlanes& planes);  // -> non-zeros
  void conv_int8_pointwise(const graph::IntOp& op, const ConvPlanes& planes);
  void conv_pointwise_dot(const graph::IntOp& op, size_t index, const ConvPlanes& planes);
  void conv_pointwise_quads(const graph::IntOp& op, size_t index, const ConvPlanes& planes);
  void conv_general(const graph::IntOp& op, const ConvPlanes& planes);
  bool conv_bytes(const graph::IntOp& op, const ConvPlanes& planes);
  void conv_depthwise(const graph::IntOp& op, const ConvPlanes& planes);
  void depthwise_channels(const graph::IntOp& op, const ConvPlanes& planes, int64_t c0, int64_t c1,
                          const uint8_t* bytes = nullptr);
  void conv_images_inner(const graph::IntOp& op, const ConvPlanes& planes, int64_t plane);
  void apply_table(size_t index, int64_t n);
  void add(const graph::IntOp& op, size_t index);
  void mul(const graph::IntOp& op, size_t index);
  void avgpool(const graph::IntOp& op, size_t index);
  void linear(const graph::IntOp& op, size_t index, int32_t* logits);
  void linear_images_inner(const graph::IntOp& op, int32_t* logits);
  void linear_dot(const graph::IntOp& op, size_t index, int32_t* logits);
  void linear_quads(const graph::IntOp& op, size_t index, int32_t* logits);

  graph::IntModel model_;
  EngineOptions options_;
  std::vector<std::unique_ptr<IntegerEngine>> workers_;  // image_parallel: one serial engine per thread
  int last_worker_ = -1;  // the worker that ran the last image of the last run, or -1
  kernels::Isa isa_;
  bool parallel_, ternary_dot_, byte_dot_, fuse_;
  int64_t capacity_ = 1;  // images per batch
  int64_t batch_ = 0;     // images in the batch in flight (or the last one)
  std::vector<std::vector<int16_t>> acts_;   // one buffer per graph activation: [C][image][H*W]
  std::vector<std::vector<int32_t>> plus_, minus_;  // per ternary op: flattened index lists
  std::vector<std::vector<int64_t>> plus_offsets_, minus_offsets_;  // per output channel: start in lists
  std::vector<std::vector<int16_t>> tables_;  // per op with an activation table: its 256 output codes
  std::vector<std::vector<int32_t>> weight_pairs_;  // per 1x1 op on the int16 dot-product path: packed weights
  std::vector<kernels::QuadWeights> weight_quads_;  // per 1x1 op on the 8-bit (AVX-512 VNNI) path
  std::vector<std::vector<int16_t>> classifier_pairs_;  // per linear op: its weights packed as a tile's input
  std::vector<kernels::ClassifierQuads> classifier_quads_;  // per linear op on the 8-bit path (linear_quads)
  std::vector<int32_t> image_words_;  // the classifier's input codes packed as a tile's weight pairs
  std::vector<std::vector<quant::arith::FoldedRequant>> folded_;  // per 1x1 op whose channels all fold, else empty
  std::vector<bool> reads_once_;  // per op: its output is read by one op only (and is not the logits)
  std::vector<bool> fusable_;     // per op: fuses_with_next but for the batch size
  std::vector<bool> written_;     // per activation: the last batch wrote its codes (see keep_activations)
  std::vector<uint8_t> packed_;   // conv_expand_depthwise: the 1x1 layer's whole input, packed
  std::vector<uint8_t> padded_bytes_;  // conv_bytes: every input plane padded, as bytes
  std::vector<int16_t> padded_;  // zero-padded input planes of a stem/depthwise convolution: [C][image][plane]
  int64_t max_pixels_ = 0;       // output pixels of the largest layer, per image (accumulator scratch per thread)
  std::vector<LayerCounts> counts_;
  std::vector<double> seconds_;
};

}  // namespace prom::infer
