// QuantizedLinear: the converted layer. Holds the weight as packed codes + scales (nibble-packed
// int4, bytes for int8/fp8, ggml blocks for GGUF formats) and dequantizes on the fly. Its forward
// equals FakeQuantLinear's forward bit for bit: the dequantized weight is the fake-quant weight.
#pragma once

#include "qat/nn/fake_quant_linear.h"

namespace qat::nn {

class QuantizedLinear : public LinearBase {
 public:
  // Quantizes `source`'s current weight with the qparams its weight quantizer uses now.
  explicit QuantizedLinear(const FakeQuantLinear& source);

  at::Tensor forward(const at::Tensor& x) override;
  at::Tensor effective_weight() const override { return dequantized_weight(); }
  at::Tensor bias() const override { return bias_; }

  at::Tensor dequantized_weight() const;
  // A deployed layer never trains its activation quantizer (a static observer stays frozen).
  void train(bool on = true) override;
  const scheme::QuantSpec& spec() const { return spec_; }
  const at::Tensor& packed_weight() const { return packed_; }
  // Bytes of weight storage: packed codes + scales (+ zero points).
  int64_t weight_bytes() const;

 private:
  scheme::QuantSpec spec_;
  at::ScalarType weight_dtype_;
  std::vector<int64_t> weight_shape_;
  at::Tensor packed_;  // buffer: uint8 packed codes (or ggml blocks)
  at::Tensor scale_;   // buffer: scales in their storage dtype (not for GGUF: inside the blocks)
  at::Tensor zero_;    // buffer: uint zero points as uint8 (undefined when the format has none)
  at::Tensor bias_;
  fake_quant::FakeQuantizer act_fq_{nullptr};  // the same activation quantizer, frozen
};

}  // namespace qat::nn
