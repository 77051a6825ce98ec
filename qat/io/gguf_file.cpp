#include "qat/io/gguf_file.h"

#include <ATen/ATen.h>

#include <cstring>

#include "ops/kquant.h"
#include "ops/pack.h"
#include "ops/quantize.h"
#include "qat/io/gguf_blocks.h"

namespace qat::io {

namespace {

std::vector<int64_t> row_shape(const at::Tensor& raw, int64_t row_elems) {
  std::vector<int64_t> s = raw.sizes().vec();
  s.back() = row_elems;
  return s;
}

}  // namespace

scheme::QuantSpec gguf_block_spec(GgmlType t) {
  const auto f = block_format(t);
  TORCH_CHECK(f.has_value(), ggml_type_name(t),
              " is not a GGUF block type with a fake-quant format");
  return scheme::QuantSpec::from_name(std::string(scheme::traits(*f).name));
}

bool gguf_can_dequantize(GgmlType type) {
  return type == GgmlType::kF32 || type == GgmlType::kF16 || type == GgmlType::kBF16 ||
         block_format(type).has_value();
}

at::Tensor dequantize_gguf_rows(const at::Tensor& raw, GgmlType type, const std::string& what) {
  TORCH_CHECK(raw.scalar_type() == at::kByte && raw.dim() >= 1, what,
              ": expected uint8 rows [..., row_bytes], got ", raw.scalar_type(), " ", raw.sizes());
  TORCH_CHECK(
      gguf_can_dequantize(type), what, ": cannot dequantize ggml type ", ggml_type_name(type),
      " (supported: F32, F16, BF16",
      [] {
        std::string names;
        for (const auto& b : kBlockFormats) names += ", " + ggml_type_name(b.type);
        return names;
      }(),
      ")");
  const GgmlTypeTraits& t = *ggml_type_traits(static_cast<uint32_t>(type));
  const int64_t row_bytes = raw.size(-1);
  TORCH_CHECK(row_bytes % t.type_size == 0, what, ": rows of ", row_bytes, " bytes are not whole ",
              t.name, " blocks of ", t.type_size, " bytes");
  const int64_t row_elems = row_bytes / t.type_size * t.block_size;
  if (raw.numel() == 0) return at::zeros(row_shape(raw, row_elems), at::kFloat);
  // A private contiguous copy: the mapping may be unaligned for the element type.
  const at::Tensor bytes = raw.contiguous().clone();
  switch (type) {
    case GgmlType::kF32:
      return bytes.view(at::kFloat).view(row_shape(raw, row_elems));
    case GgmlType::kF16:
    case GgmlType::kBF16: {
      // Bit-level widening rather than at::to: libtorch turns every NaN into one canonical NaN,
      // while ggml and numpy keep the payload (and the reference tests compare bits).
      at::Tensor out = at::empty(row_shape(raw, row_elems), at::kFloat);
      const auto* in = bytes.data_ptr<uint8_t>();
      auto* y = out.data_ptr<float>();
      for (int64_t i = 0; i < out.numel(); ++i) {
        uint16_t h;
        std::memcpy(&h, in + 2 * i, 2);
        if (type == GgmlType::kF16) {
          y[i] = fp16_to_fp32(h);
        } else {
          const uint32_t bits = static_cast<uint32_t>(h) << 16;
          std::memcpy(&y[i], &bits, 4);
        }
      }
      return out;
    }
    default:
      break;
  }
  // Block types: the same unpack + dequantize as the project's fake quant, so an exported
  // model's weights equal its fake-quantized ones bit for bit.
  const scheme::QuantSpec spec = gguf_block_spec(type);
  if (scheme::is_kquant(spec.format)) return ops::dequantize_kquant(bytes, spec, at::kFloat);
  const auto un = ops::unpack_gguf_blocks(bytes, spec);
  return ops::dequantize(un.codes, spec, un.qparams, at::kFloat);
}

GgufFile GgufFile::open(const std::string& path) {
  GgufFile f;
  f.file_ = MappedFile::open(path);
  f.contents_ = parse_gguf(f.file_->data(), f.file_->size(), path);
  return f;
}

const GgufTensorInfo& GgufFile::tensor_info(const std::string& name) const {
  const GgufTensorInfo* t = contents_.find(name);
  TORCH_CHECK(t != nullptr, path(), ": no tensor named '", name, "'");
  return *t;
}

const uint8_t* GgufFile::tensor_data(const std::string& name) const {
  return file_->data() + contents_.data_offset + tensor_info(name).offset;
}

at::Tensor GgufFile::raw(const std::string& name) const {
  const GgufTensorInfo& t = tensor_info(name);
  std::vector<int64_t> shape = t.torch_shape();
  if (shape.empty()) shape.push_back(1);
  shape.back() = static_cast<int64_t>(t.row_bytes());
  uint8_t* ptr = file_->mutable_data(contents_.data_offset + t.offset);
  std::shared_ptr<MappedFile> keep = file_;
  return at::from_blob(
      ptr, shape, [keep](void*) {}, at::TensorOptions().dtype(at::kByte));
}

at::Tensor GgufFile::dequantize(const std::string& name) const {
  const GgufTensorInfo& t = tensor_info(name);
  at::Tensor out = dequantize_gguf_rows(raw(name), t.type, path() + ": tensor '" + name + "'");
  return out.view(t.torch_shape());
}

}  // namespace qat::io
