// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian
// header length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {...}}, then the
// raw little-endian tensor bytes. prom uses it for float weights (torchvision key names), checkpoints
// and exported integer models. Reading validates everything: a bad file is a prom::Error, never a crash.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>

namespace prom::io {

struct TensorFile {
  std::map<std::string, torch::Tensor> tensors;  // sorted by name: writing is deterministic
  std::map<std::string, std::string> metadata;
};

// Serialises to bytes (tensors are written in name order, header padded to 8 bytes).
std::string encode_safetensors(const TensorFile& file);
// Parses bytes; `origin` names the source in error messages.
TensorFile decode_safetensors(const std::string& bytes, const std::string& origin);

TensorFile read_safetensors(const std::string& path);
void write_safetensors(const std::string& path, const TensorFile& file);  // atomic

}  // namespace prom::io
