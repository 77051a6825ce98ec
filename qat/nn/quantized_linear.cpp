#include "qat/nn/quantized_linear.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include "ops/kquant.h"
#include "ops/pack.h"

namespace qat::nn {

using scheme::Format;

QuantizedLinear::QuantizedLinear(const FakeQuantLinear& source)
    : LinearBase(source.in_features(), source.out_features()) {
  torch::NoGradGuard no_grad;
  const fake_quant::FakeQuantizer wq = source.weight_quantizer();
  TORCH_CHECK(wq, "convert: this FakeQuantLinear does not quantize its weight (no weight config)");
  TORCH_CHECK(wq->active(),
              "convert: the weight quantizer is disabled or still in its delay (step ", wq->step(),
              " < delay ", wq->config().delay_steps,
              "); the layer would not deploy what it trains");
  spec_ = wq->config().spec;
  const at::Tensor w =
      source.sparsity_mask().defined() ? source.weight() * source.sparsity_mask() : source.weight();
  weight_dtype_ = w.scalar_type();
  weight_shape_ = w.sizes().vec();
  if (scheme::is_kquant(spec_.format)) {
    // ggml k-quant super-blocks: exactly the bytes a GGUF tensor of that type holds.
    packed_ = register_buffer("qweight", ops::quantize_kquant(w.detach(), spec_));
  } else {
    const ops::QParams qp = wq->qparams_for(w);
    const at::Tensor codes = ops::quantize(w.detach(), spec_, qp);
    if (spec_.traits().fixed_block > 0) {
      packed_ = register_buffer("qweight", ops::pack_gguf_blocks(codes, spec_, qp));
    } else {
      packed_ = register_buffer("qweight", ops::pack_codes(codes, spec_));
      // Scales are already rounded to their storage dtype, so storing them there is lossless.
      scale_ = register_buffer("scale", qp.scale.to(scheme::to_scalar_type(spec_.scale_dtype)));
      if (spec_.format == Format::kUInt)
        zero_ = register_buffer("zero_point", qp.zero.to(at::kByte));
    }
  }
  if (source.bias().defined()) bias_ = register_buffer("bias", source.bias().detach().clone());
  if (source.activation_quantizer()) {
    act_fq_ = register_module("activation_fake_quant", source.activation_quantizer());
    act_fq_->eval();
  }
}

at::Tensor QuantizedLinear::dequantized_weight() const {
  if (scheme::is_kquant(spec_.format)) return ops::dequantize_kquant(packed_, spec_, weight_dtype_);
  if (spec_.traits().fixed_block > 0) {
    const ops::UnpackedBlocks b = ops::unpack_gguf_blocks(packed_, spec_);
    return ops::dequantize(b.codes, spec_, b.qparams, weight_dtype_);
  }
  const at::Tensor codes = ops::unpack_codes(packed_, spec_);
  const ops::QParams qp{scale_.to(at::kFloat),
                        zero_.defined() ? zero_.to(at::kFloat) : at::Tensor()};
  return ops::dequantize(codes, spec_, qp, weight_dtype_);
}

void QuantizedLinear::train(bool on) {
  torch::nn::Module::train(on);
  if (act_fq_) act_fq_->eval();
}

at::Tensor QuantizedLinear::forward(const at::Tensor& x) {
  const at::Tensor xq = act_fq_ ? act_fq_->forward(x) : x;
  return at::linear(xq, dequantized_weight(), bias_);
}

int64_t QuantizedLinear::weight_bytes() const {
  int64_t n = packed_.numel() * packed_.element_size();
  if (scale_.defined()) n += scale_.numel() * scale_.element_size();
  if (zero_.defined()) n += zero_.numel() * zero_.element_size();
  return n;
}

}  // namespace qat::nn
