// libFuzzer target: the safetensors reader (lib/io/safetensors.h) on arbitrary bytes.
// A prom::Error is the expected outcome for a bad file; anything else escaping (another exception
// type, a crash, a sanitizer report, a huge allocation) is a finding. A file that does decode must
// survive a round trip: what prom writes back, it must read back identically.
#include <cstdint>
#include <cstdlib>
#include <string>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  prom::io::TensorFile file;
  try {
    file = prom::io::decode_safetensors(bytes, "fuzz.safetensors");
  } catch (const prom::Error&) {
    return 0;
  }
  prom::io::TensorFile again = prom::io::decode_safetensors(prom::io::encode_safetensors(file), "round trip");
  if (again.metadata != file.metadata || again.tensors.size() != file.tensors.size()) std::abort();
  for (const auto& [name, tensor] : file.tensors) {
    const torch::Tensor& other = again.tensors.at(name);
    if (other.scalar_type() != tensor.scalar_type() || other.sizes() != tensor.sizes()) std::abort();
  }
  return 0;
}
