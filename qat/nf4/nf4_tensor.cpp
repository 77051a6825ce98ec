#include "qat/nf4/nf4_tensor.h"

#include <ATen/ATen.h>

#include "ops/nf4.h"

namespace qat::nf4 {

void NF4Config::validate() const {
  ops::check_nf4_blocksize(blocksize, "NF4Config.blocksize");
  if (double_quant) ops::check_nf4_blocksize(nested_blocksize, "NF4Config.nested_blocksize");
}

NF4Tensor NF4Tensor::quantize(const at::Tensor& w, const NF4Config& config) {
  config.validate();
  TORCH_CHECK(w.defined(), "NF4Tensor::quantize: the weight is undefined");
  NF4Tensor t;
  t.config_ = config;
  t.shape_ = w.sizes().vec();
  t.dtype_ = w.scalar_type();
  ops::Nf4Quantized q = ops::nf4_quantize(w, config.blocksize);
  t.codes_ = std::move(q.codes);
  if (config.double_quant) {
    ops::Nf4DoubleQuantized dq = ops::nf4_double_quantize(q.absmax, config.nested_blocksize);
    t.absmax_ = std::move(dq.codes);
    t.nested_absmax_ = std::move(dq.nested_absmax);
    t.offset_ = std::move(dq.offset);
  } else {
    t.absmax_ = std::move(q.absmax);
  }
  return t;
}

NF4Tensor NF4Tensor::from_parts(at::Tensor codes, at::Tensor absmax, at::Tensor nested_absmax,
                                at::Tensor offset, std::vector<int64_t> shape, at::ScalarType dtype,
                                const NF4Config& config) {
  config.validate();
  const int64_t n = c10::multiply_integers(shape);
  const int64_t blocks = (n + config.blocksize - 1) / config.blocksize;
  TORCH_CHECK(n > 0, "NF4Tensor::from_parts: shape ", shape, " has no elements");
  TORCH_CHECK(codes.defined() && codes.scalar_type() == at::kByte && codes.numel() == (n + 1) / 2,
              "NF4Tensor::from_parts: codes must be uint8 with ", (n + 1) / 2, " bytes for shape ",
              shape);
  if (config.double_quant) {
    const int64_t nested = (blocks + config.nested_blocksize - 1) / config.nested_blocksize;
    TORCH_CHECK(absmax.defined() && absmax.scalar_type() == at::kByte && absmax.numel() == blocks,
                "NF4Tensor::from_parts: with double quant absmax must be uint8 with ", blocks,
                " codes");
    TORCH_CHECK(nested_absmax.defined() && nested_absmax.scalar_type() == at::kFloat &&
                    nested_absmax.numel() == nested,
                "NF4Tensor::from_parts: nested_absmax must be float32 with ", nested, " values");
    TORCH_CHECK(offset.defined() && offset.scalar_type() == at::kFloat && offset.numel() == 1,
                "NF4Tensor::from_parts: offset must be one float32 value");
  } else {
    TORCH_CHECK(absmax.defined() && absmax.scalar_type() == at::kFloat && absmax.numel() == blocks,
                "NF4Tensor::from_parts: without double quant absmax must be float32 with ", blocks,
                " values");
  }
  NF4Tensor t;
  t.config_ = config;
  t.shape_ = std::move(shape);
  t.dtype_ = dtype;
  t.codes_ = codes.reshape({(n + 1) / 2, 1});
  t.absmax_ = absmax.reshape({blocks});
  if (config.double_quant) {
    t.nested_absmax_ = nested_absmax.reshape({-1});
    t.offset_ = offset.reshape(at::IntArrayRef{});
  }
  return t;
}

at::Tensor NF4Tensor::block_absmax() const {
  TORCH_CHECK(defined(), "NF4Tensor: the tensor is empty; create it with NF4Tensor::quantize");
  if (!config_.double_quant) return absmax_;
  return ops::nf4_double_dequantize({absmax_, nested_absmax_, offset_}, config_.nested_blocksize);
}

at::Tensor NF4Tensor::dequantize(at::ScalarType dtype) const {
  return ops::nf4_dequantize(codes_, block_absmax(), shape_, config_.blocksize, dtype);
}

NF4Tensor NF4Tensor::to(const at::Device& device) const {
  NF4Tensor t = *this;
  auto move = [&](at::Tensor& x) {
    if (x.defined()) x = x.to(device);
  };
  move(t.codes_);
  move(t.absmax_);
  move(t.nested_absmax_);
  move(t.offset_);
  return t;
}

int64_t NF4Tensor::numel() const {
  return c10::multiply_integers(shape_);
}

int64_t NF4Tensor::packed_nbytes(int64_t numel, const NF4Config& config) {
  const int64_t blocks = (numel + config.blocksize - 1) / config.blocksize;
  const int64_t codes = (numel + 1) / 2;
  if (!config.double_quant) return codes + blocks * 4;
  const int64_t nested = (blocks + config.nested_blocksize - 1) / config.nested_blocksize;
  return codes + blocks + nested * 4 + 4;  // uint8 absmax codes, float32 nested absmax, offset
}

int64_t NF4Tensor::nbytes() const {
  auto bytes = [](const at::Tensor& x) -> int64_t {
    return x.defined() ? x.numel() * x.element_size() : 0;
  };
  return bytes(codes_) + bytes(absmax_) + bytes(nested_absmax_) + bytes(offset_);
}

}  // namespace qat::nf4
