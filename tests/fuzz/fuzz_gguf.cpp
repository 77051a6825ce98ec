// libFuzzer target: the GGUF parser (qat/io/gguf.cpp), metadata getters, and k-quant dequant.
//
// Properties checked on every input: the parser either accepts or throws std::runtime_error;
// an accepted file's tensor data lies inside it; every KV can be read with its own type; Q4_K
// and Q6_K tensors dequantize without touching memory outside their bytes; and re-encoding an
// accepted header parses back to the same metadata and tensor infos.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "qat/io/gguf.h"
#include "qat/io/gguf_blocks.h"

namespace {

using qat::io::GgufValue;
using qat::io::GgufValueType;

void require(bool ok) {
  if (!ok) __builtin_trap();
}

template <class T>
void read_as(const GgufValue& v) {
  if (v.is_array()) {
    require(v.as_array<T>("fuzz").size() == v.count());
  } else {
    (void)v.as<T>("fuzz");
  }
}

void read_value(const GgufValue& v) {
  switch (v.element_type()) {
    case GgufValueType::kUint8:
      read_as<uint8_t>(v);
      break;
    case GgufValueType::kInt8:
      read_as<int8_t>(v);
      break;
    case GgufValueType::kUint16:
      read_as<uint16_t>(v);
      break;
    case GgufValueType::kInt16:
      read_as<int16_t>(v);
      break;
    case GgufValueType::kUint32:
      read_as<uint32_t>(v);
      break;
    case GgufValueType::kInt32:
      read_as<int32_t>(v);
      break;
    case GgufValueType::kFloat32:
      read_as<float>(v);
      break;
    case GgufValueType::kBool:
      read_as<bool>(v);
      break;
    case GgufValueType::kUint64:
      read_as<uint64_t>(v);
      break;
    case GgufValueType::kInt64:
      read_as<int64_t>(v);
      break;
    case GgufValueType::kFloat64:
      read_as<double>(v);
      break;
    case GgufValueType::kString:
      require((v.is_array() ? v.as_string_array("fuzz").size() : 1) == v.count());
      break;
    case GgufValueType::kArray:
      require(false);
      break;  // nested arrays must have been rejected
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  qat::io::GgufContents c;
  try {
    c = qat::io::parse_gguf(data, size, "fuzz");
  } catch (const std::runtime_error&) {
    return 0;  // rejected with a message: fine
  }
  for (const auto& [key, value] : c.metadata.entries()) read_value(value);
  std::vector<float> out;
  for (const auto& t : c.tensors) {
    require(c.data_offset + t.offset + t.nbytes <= size);
    require(c.find(t.name) == &t);
    const uint8_t* p = data + c.data_offset + t.offset;
    if (qat::io::is_kquant_type(t.type) && t.nbytes <= (1u << 20)) {
      const auto* traits = qat::io::ggml_type_traits(static_cast<uint32_t>(t.type));
      const int64_t n_blocks = static_cast<int64_t>(t.nbytes / traits->type_size);
      out.resize(static_cast<size_t>(n_blocks) * traits->block_size);
      qat::io::dequantize_kquant_blocks(t.type, p, n_blocks, out.data());
    }
  }

  // Re-encode (always as version 3) and parse again: the same metadata and tensor infos.
  std::vector<qat::io::GgufTensorInfo> infos = c.tensors;
  const uint64_t data_bytes = qat::io::layout_gguf_tensors(infos, c.alignment);
  std::string file = qat::io::encode_gguf_header(c.metadata, infos, c.alignment);
  if (data_bytes > (uint64_t{64} << 20)) return 0;  // padding of huge alignments: skip the copy
  file.append(data_bytes, '\0');
  const auto back = qat::io::parse_gguf(reinterpret_cast<const uint8_t*>(file.data()), file.size(),
                                        "fuzz-rewrite");
  require(back.metadata.size() == c.metadata.size() && back.tensors.size() == c.tensors.size());
  for (size_t i = 0; i < c.metadata.size(); ++i) {
    require(back.metadata.entries()[i].first == c.metadata.entries()[i].first);
    require(back.metadata.entries()[i].second == c.metadata.entries()[i].second);
  }
  for (size_t i = 0; i < c.tensors.size(); ++i) {
    const auto &a = c.tensors[i], &b = back.tensors[i];
    require(a.name == b.name && a.ne == b.ne && a.type == b.type && a.offset == b.offset &&
            a.nbytes == b.nbytes);
  }
  return 0;
}
