// Writes GGUF v3 files: metadata of every value type, dense tensors from at::Tensor (F32, F16,
// BF16) and block-quantized tensors from their raw block bytes (e.g. ops::pack_gguf_blocks).
//
// Tensors are written in the order added, each padded to the alignment (general.alignment when
// set, else 32), with sequential offsets: exactly what ggml's reader requires.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>
#include <vector>

#include "qat/io/gguf.h"

namespace qat::io {

class GgufWriter {
 public:
  // Sets or replaces a key (the original position is kept).
  GgufWriter& set(const std::string& key, GgufValue value);
  template <class T>
  GgufWriter& set_scalar(const std::string& key, T v) {
    return set(key, GgufValue::scalar<T>(v));
  }
  template <class T>
  GgufWriter& set_array(const std::string& key, const std::vector<T>& v) {
    return set(key, GgufValue::array<T>(v));
  }
  GgufWriter& set_u32(const std::string& key, uint32_t v) { return set_scalar(key, v); }
  GgufWriter& set_i32(const std::string& key, int32_t v) { return set_scalar(key, v); }
  GgufWriter& set_u64(const std::string& key, uint64_t v) { return set_scalar(key, v); }
  GgufWriter& set_f32(const std::string& key, float v) { return set_scalar(key, v); }
  GgufWriter& set_bool(const std::string& key, bool v) { return set_scalar(key, v); }
  GgufWriter& set_string(const std::string& key, const std::string& v) {
    return set(key, GgufValue::string(v));
  }
  GgufWriter& set_string_array(const std::string& key, const std::vector<std::string>& v) {
    return set(key, GgufValue::string_array(v));
  }
  // Copies every key of `m` (e.g. the tokenizer keys of a source GGUF).
  GgufWriter& copy_metadata(const GgufMetadata& m);
  const GgufMetadata& metadata() const { return metadata_; }

  // A dense tensor in torch order ([out, in] is written with ne = [in, out]), stored as `type`
  // (F32, F16 or BF16; converted with round-to-nearest-even when t has another float dtype).
  void add_tensor(const std::string& name, const at::Tensor& t, GgmlType type = GgmlType::kF32);
  // Raw bytes of any ggml type: `shape` in torch order (elements, not bytes), `bytes` uint8 with
  // exactly the tensor's size (e.g. pack_gguf_blocks(codes [out, in]) -> [out, in/32*block]).
  void add_raw_tensor(const std::string& name, GgmlType type, const std::vector<int64_t>& shape,
                      const at::Tensor& bytes);

  // Throws (c10::Error) naming the path on an I/O error. Writes `path`.tmp, then renames.
  void write(const std::string& path) const;

 private:
  void check_new_name(const std::string& name) const;
  GgufMetadata metadata_;
  std::vector<GgufTensorInfo> infos_;
  std::vector<at::Tensor> data_;  // uint8, contiguous, CPU, infos_[i].nbytes each
};

}  // namespace qat::io
