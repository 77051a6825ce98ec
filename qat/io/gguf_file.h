// A GGUF file opened for reading: memory-mapped, header validated on open, metadata with typed
// getters, raw tensor bytes, and dequantization to float32 in torch order.
#pragma once

#include <ATen/core/Tensor.h>

#include <memory>
#include <string>
#include <vector>

#include "qat/io/gguf.h"
#include "qat/io/mapped_file.h"
#include "qat/scheme/quant_spec.h"

namespace qat::io {

// Types dequantize() handles: F32, F16, BF16 and the block types of kBlockFormats
// (gguf_blocks.h), through the same code as fake quant.
bool gguf_can_dequantize(GgmlType type);

// The fake-quant spec of a block type (Q8_0 -> gguf_q8_0, ..., Q6_K -> gguf_q6_k; kBlockFormats),
// whose fake quant dequantizes exactly like the type's blocks; an error for other types.
scheme::QuantSpec gguf_block_spec(GgmlType t);

// raw: uint8 [..., row_bytes] rows of `type` blocks -> float32 [..., row_bytes / type_size *
// block_size]. Throws (c10::Error) for a type not listed above, naming `what`.
at::Tensor dequantize_gguf_rows(const at::Tensor& raw, GgmlType type,
                                const std::string& what = "GGUF");

class GgufFile {
 public:
  // Throws std::runtime_error naming the path on an unreadable or malformed file.
  static GgufFile open(const std::string& path);

  const std::string& path() const { return file_->path(); }
  uint32_t version() const { return contents_.version; }
  uint64_t alignment() const { return contents_.alignment; }
  uint64_t data_offset() const { return contents_.data_offset; }
  const GgufMetadata& metadata() const { return contents_.metadata; }
  const std::vector<GgufTensorInfo>& tensors() const { return contents_.tensors; }
  bool has_tensor(const std::string& name) const { return contents_.find(name) != nullptr; }
  // Throws naming the file and the tensor when absent.
  const GgufTensorInfo& tensor_info(const std::string& name) const;
  // The tensor's bytes in the mapping (tensor_info(name).nbytes of them).
  const uint8_t* tensor_data(const std::string& name) const;
  // The bytes as uint8 [ne[n-1], ..., ne[1], row_bytes], a zero-copy view that keeps the mapping
  // alive (copy-on-write: writes never reach the file). Rows of blocks can be permuted as is.
  at::Tensor raw(const std::string& name) const;
  // float32 with torch_shape() (GGUF ne [in, out] -> [out, in]); a new tensor.
  at::Tensor dequantize(const std::string& name) const;

 private:
  std::shared_ptr<MappedFile> file_;
  GgufContents contents_;
};

}  // namespace qat::io
