// NF4Tensor: a weight stored as bitsandbytes stores it with quantize_4bit(quant_type="nf4"):
// packed 4-bit codes over the flattened tensor, one float32 absmax per block, and with double
// quantization (compress_statistics=True) the absmax itself as 8-bit codes of the signed dynamic
// map + one float32 nested absmax per 256 blocks + one float32 offset. Every piece is
// byte-identical to bitsandbytes 0.50.2 on the CPU (tests/qat/nf4/test_nf4_bnb.cpp). Math:
// ops/nf4.h.
#pragma once

#include <ATen/core/Tensor.h>

#include <cstdint>
#include <vector>

namespace qat::nf4 {

// Validated on construction of an NF4Tensor (TORCH_CHECK naming the field to fix).
struct NF4Config {
  int64_t blocksize = 64;          // power of two in [32, 4096]
  bool double_quant = true;        // bitsandbytes' compress_statistics
  int64_t nested_blocksize = 256;  // bitsandbytes always uses 256
  void validate() const;
};

class NF4Tensor {
 public:
  NF4Tensor() = default;
  // w: any shape, float32/float16/bfloat16, finite, non-empty. w's dtype is remembered as dtype().
  static NF4Tensor quantize(const at::Tensor& w, const NF4Config& config = {});
  // From stored pieces (a checkpoint, or bitsandbytes' QuantState): checks their sizes and dtypes
  // against shape and config. nested_absmax and offset are undefined without double quant.
  static NF4Tensor from_parts(at::Tensor codes, at::Tensor absmax, at::Tensor nested_absmax,
                              at::Tensor offset, std::vector<int64_t> shape, at::ScalarType dtype,
                              const NF4Config& config);

  // The weight as `dtype` (float32, float16, bfloat16), w's shape: table[code] * absmax in float32
  // (absmax_hat = map[q] * nested_absmax + offset with double quant), one rounding to dtype.
  at::Tensor dequantize(at::ScalarType dtype) const;
  at::Tensor dequantize() const { return dequantize(dtype_); }
  // The float32 absmax per block the values are scaled by (dequantized with double quant).
  at::Tensor block_absmax() const;

  NF4Tensor to(const at::Device& device) const;

  // Storage bytes: codes + absmax (float32, or uint8 codes + nested absmax + offset).
  int64_t nbytes() const;
  // nbytes() of a tensor of `numel` elements quantized with `config`, without quantizing it.
  static int64_t packed_nbytes(int64_t numel, const NF4Config& config);
  double bits_per_param() const {
    return 8.0 * static_cast<double>(nbytes()) / static_cast<double>(numel());
  }

  bool defined() const { return codes_.defined(); }
  const at::Tensor& codes() const { return codes_; }  // uint8 [(n+1)/2, 1]
  const at::Tensor& absmax() const {
    return absmax_;
  }  // float32 [blocks], or uint8 with double quant
  const at::Tensor& nested_absmax() const { return nested_absmax_; }  // float32 (double quant)
  const at::Tensor& offset() const { return offset_; }  // float32 0-dim (double quant)
  const NF4Config& config() const { return config_; }
  int64_t blocksize() const { return config_.blocksize; }
  bool double_quant() const { return config_.double_quant; }
  const std::vector<int64_t>& shape() const { return shape_; }
  at::ScalarType dtype() const { return dtype_; }
  int64_t numel() const;
  at::Device device() const { return codes_.device(); }

 private:
  NF4Config config_;
  std::vector<int64_t> shape_;
  at::ScalarType dtype_ = at::kFloat;
  at::Tensor codes_;
  at::Tensor absmax_;
  at::Tensor nested_absmax_;
  at::Tensor offset_;
};

}  // namespace qat::nf4
