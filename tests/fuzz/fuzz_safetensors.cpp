// libFuzzer target: the safetensors header parser (qat/io/safetensors.cpp).
//
// Properties checked on every input: the parser either accepts or throws std::runtime_error
// (any other exception, crash, sanitizer report or hang is a finding); an accepted file's
// tensors lie inside it; and re-writing an accepted header with our writer parses back to the
// same tensors (the writer and the reader agree on the format).
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "qat/io/safetensors.h"

namespace {

void require(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  qat::io::SafetensorsHeader h;
  try {
    h = qat::io::parse_safetensors(data, size, "fuzz");
  } catch (const std::runtime_error&) {
    return 0;  // rejected with a message: fine
  }
  uint64_t sum = 0;
  for (const auto& t : h.tensors) {
    require(t.begin <= t.end && h.data_start + t.end <= size);
    require(h.find(t.name) == &t);
    // Touch the first and last byte so ASan checks the bounds.
    if (t.end > t.begin) sum += data[h.data_start + t.begin] + data[h.data_start + t.end - 1];
  }
  (void)sum;

  const auto fmt = h.metadata.find("format");
  if (fmt != h.metadata.end() && fmt->second != "pt") return 0;  // the writer only writes "pt"
  std::vector<qat::io::SafetensorsEntry> entries;
  for (const auto& t : h.tensors) entries.push_back({t.name, t.dtype, t.shape});
  const qat::io::SafetensorsLayout layout = qat::io::plan_safetensors(entries, h.metadata);
  std::string file = layout.header_bytes;
  file.append(layout.data_bytes, '\0');
  const auto back = qat::io::parse_safetensors(reinterpret_cast<const uint8_t*>(file.data()),
                                               file.size(), "fuzz-rewrite");
  require(back.tensors.size() == h.tensors.size());
  for (const auto& t : h.tensors) {
    const auto* b = back.find(t.name);
    require(b != nullptr && b->dtype == t.dtype && b->shape == t.shape &&
            b->nbytes() == t.nbytes());
  }
  return 0;
}
