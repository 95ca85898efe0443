// A known-answer check of LibTorch's channels_last (NHWC) convolutions on the CPU, run before prom
// trains or evaluates in that memory format.
//
// Why: Debian 13's LibTorch 2.6 (oneDNN 3.7.2) computes many channels_last 1x1 convolutions wrongly
// on some CPUs (found on an AMD EPYC with AVX-512 BF16): its brgconv_1x1 kernel gets the output
// channels past the last multiple of 32 wrong (channels 64-71 of a 288 -> 72 convolution, errors ~1
// on values ~3): with one thread from batch 16 on, with two or more at small batches too, with
// ONEDNN_MAX_CPU_ISA=AVX2 as well; torchvision's own models in Python show it (train-mode loss of a
// MobileNetV2 x0.25 at batch 16: 1.3526 in channels_last, 1.3958 in NCHW and with LibTorch 1.13).
// NCHW takes another kernel (jit_1x1) and is right. A wrong convolution does not crash: it trains a
// worse model and breaks the exactness proof, so prom asks before it uses channels_last.
#pragma once
#include <string>

namespace prom {

struct ChannelsLastCheck {
  bool ok = true;
  double max_difference = 0;  // largest |NHWC - NCHW| over the failing case's outputs or gradients
  std::string failing_case;   // e.g. "1x1 conv 288->72 on 2x6x6, forward"; empty when ok
};

// Runs a few convolutions shaped like a MobileNet's (1x1 with output channels not a multiple of 32 at
// batches 1-32, depthwise 3x3 at stride 1 and 2, the 3x3 stem), forward and backward, in NCHW and channels_last
// with LibTorch's current thread count, on deterministic inputs (the global RNG is not touched).
// A case fails when the two formats differ by more than 1e-3 relative to the output's magnitude
// (float32 rounding differences are ~1e-6). Takes a few milliseconds.
ChannelsLastCheck check_channels_last_convolutions();

// One line for a failed check: what failed, the LibTorch version and thread count, and the remedy.
std::string describe_channels_last_failure(const ChannelsLastCheck& check);

}  // namespace prom
