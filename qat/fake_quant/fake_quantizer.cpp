#include "qat/fake_quant/fake_quantizer.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include "qat/fake_quant/recompute.h"

namespace qat::fake_quant {

using scheme::Format;
using K = scheme::Granularity::Kind;

ScaleMode scale_mode_from_name(const std::string& name) {
  if (name == "dynamic") return ScaleMode::kDynamic;
  if (name == "static") return ScaleMode::kStatic;
  if (name == "lsq" || name == "learnable") return ScaleMode::kLearnable;
  TORCH_CHECK(false, "unknown scale mode '", name, "': expected dynamic, static or lsq");
}

std::string to_string(ScaleMode m) {
  switch (m) {
    case ScaleMode::kDynamic:
      return "dynamic";
    case ScaleMode::kStatic:
      return "static";
    case ScaleMode::kLearnable:
      return "lsq";
  }
  return "?";
}

void FakeQuantizerConfig::validate() const {
  spec.validate();
  range.validate();
  TORCH_CHECK(delay_steps >= 0, "delay_steps must be >= 0, got ", delay_steps);
  const bool learned_blocks = learns_block_scales(spec.format);
  if (scale_mode != ScaleMode::kDynamic) {
    TORCH_CHECK(spec.granularity.kind != K::kPerToken, "per-token scales change with every batch: ",
                "use scale mode 'dynamic' for per_token, not '", to_string(scale_mode), "'");
    TORCH_CHECK((spec.traits().fixed_block == 0 && spec.format != Format::kNf4) ||
                    (learned_blocks && scale_mode == ScaleMode::kLearnable),
                "format '", spec.traits().name,
                "' derives each block's scale from the block: ", "use scale mode 'dynamic'",
                learned_blocks ? " or 'learnable'" : "", ", not '", to_string(scale_mode), "'");
  }
  if (scale_mode == ScaleMode::kLearnable && learned_blocks) {
    TORCH_CHECK(range.method == RangeMethod::kMinMax, "learned block scales of '",
                spec.traits().name, "' start from ggml's own rule: the range must be minmax, got ",
                to_string(range.method));
  } else if (scale_mode == ScaleMode::kLearnable) {
    TORCH_CHECK(spec.traits().learnable_ok,
                "learnable (LSQ) scales need an int or uint format, got '", spec.traits().name,
                "'");
    TORCH_CHECK(spec.scale_dtype == scheme::ScaleDtype::kFloat32, "LSQ learns float32 scales");
  }
}

FakeQuantizerImpl::FakeQuantizerImpl(FakeQuantizerConfig cfg, const at::Tensor& like)
    : cfg_(std::move(cfg)), for_weight_(like.defined()) {
  cfg_.validate();
  if (like.defined()) cfg_.spec.validate_for(like.sizes());
  step_ = register_buffer("step", torch::zeros({}, torch::kLong));
  if (cfg_.scale_mode == ScaleMode::kStatic) {
    observer_ = std::make_unique<Observer>(cfg_.spec, cfg_.range, cfg_.observer_mode,
                                           cfg_.observer_momentum);
  }
  if (cfg_.scale_mode == ScaleMode::kLearnable) {
    std::vector<int64_t> shape;
    if (like.defined()) {
      cfg_.spec.validate_for(like.sizes());
      shape = cfg_.spec.scale_shape(like.sizes());
    } else {
      TORCH_CHECK(!learns_block_scales(cfg_.spec.format), "learned block scales of '",
                  cfg_.spec.traits().name, "' are for weights: give the weight to size them");
      TORCH_CHECK(cfg_.spec.granularity.kind == K::kPerTensor,
                  "a learnable activation scale is per-tensor (the shape is unknown up front)");
    }
    const auto opts = torch::TensorOptions().dtype(torch::kFloat);
    // ggml block formats: "scale" is each block's d and "zero_point" its min m (Q4_1, Q5_1).
    // k-quants: "scale" and "zero_point" are each super-block's d and dmin (dmin: Q4_K, Q5_K),
    // "sub_scale" and "sub_min" its sub-blocks' scales and mins (see KQuantLearned).
    const bool kquant = scheme::is_kquant(cfg_.spec.format);
    const bool affine_kquant = kquant && cfg_.spec.format != Format::kQ6_K;
    scale_ = register_parameter("scale", torch::ones(shape, opts));
    if (cfg_.spec.format == Format::kUInt || affine_kquant ||
        (learns_block_scales(cfg_.spec.format) && cfg_.spec.has_zero_point())) {
      zero_point_ = register_parameter("zero_point", torch::zeros(shape, opts));
    }
    if (kquant) {
      std::vector<int64_t> sub_shape = shape;
      sub_shape.back() *= ops::kquant_sub_blocks(cfg_.spec.format);
      sub_scale_ = register_parameter("sub_scale", torch::ones(sub_shape, opts));
      if (affine_kquant) sub_min_ = register_parameter("sub_min", torch::zeros(sub_shape, opts));
    }
    initialized_ = register_buffer("initialized", torch::zeros({}, torch::kBool));
    // A model built on the meta device (a memory plan, a streamed load) has no values to
    // initialise from: the shapes are all it needs.
    if (like.defined() && !like.is_meta()) init_learnable(like);
  }
}

void FakeQuantizerImpl::init_learnable(const at::Tensor& x) {
  torch::NoGradGuard no_grad;
  if (scheme::is_kquant(cfg_.spec.format)) {  // the parameters of ggml's own search
    const KQuantLearned p = kquant_learned_init(x, cfg_.spec);
    scale_.copy_(p.d.reshape(scale_.sizes()));
    sub_scale_.copy_(p.sub_scale.reshape(sub_scale_.sizes()));
    if (zero_point_.defined()) zero_point_.copy_(p.dmin.reshape(zero_point_.sizes()));
    if (sub_min_.defined()) sub_min_.copy_(p.sub_min.reshape(sub_min_.sizes()));
    initialized_.fill_(true);
    return;
  }
  const ops::QParams qp = range_qparams(x.detach(), cfg_.spec, cfg_.range);
  scale_.copy_(qp.scale.reshape(scale_.sizes()));
  if (zero_point_.defined()) zero_point_.copy_(qp.zero.reshape(zero_point_.sizes()));
  initialized_.fill_(true);
}

KQuantLearned FakeQuantizerImpl::kquant_learned() const {
  return {scale_, zero_point_, sub_scale_, sub_min_};
}

at::Tensor FakeQuantizerImpl::kquant_blocks(const at::Tensor& w) const {
  TORCH_CHECK(scheme::is_kquant(cfg_.spec.format), "kquant_blocks: the quantizer's format '",
              cfg_.spec.traits().name, "' is not a k-quant");
  if (cfg_.scale_mode != ScaleMode::kLearnable) return ops::quantize_kquant(w, cfg_.spec);
  return ops::quantize_kquant_with(w, kquant_stored_params(kquant_learned(), cfg_.spec), cfg_.spec);
}

bool FakeQuantizerImpl::active() const {
  return cfg_.enabled && step_.item<int64_t>() >= cfg_.delay_steps;
}

ops::QParams FakeQuantizerImpl::qparams_for(const at::Tensor& x) const {
  switch (cfg_.scale_mode) {
    case ScaleMode::kDynamic:
      return range_qparams(x, cfg_.spec, cfg_.range);
    case ScaleMode::kStatic:
      return observer_->qparams();
    case ScaleMode::kLearnable: {
      const scheme::CodeRange r = cfg_.spec.code_range();
      const auto shape = cfg_.spec.scale_shape(x.sizes());
      TORCH_CHECK(!scheme::is_kquant(cfg_.spec.format), "qparams_for: a k-quant has no ",
                  "per-group qparams; its blocks come from kquant_blocks()");
      if (learns_block_scales(cfg_.spec.format)) {
        const ops::QParams qp = gguf_stored_qparams(
            scale_.detach(), zero_point_.defined() ? zero_point_.detach() : at::Tensor());
        return {qp.scale.reshape(shape), qp.zero.reshape(shape)};
      }
      at::Tensor zero = zero_point_.defined()
                            ? zero_point_.detach().clamp(r.qmin, r.qmax).round().reshape(shape)
                            : at::zeros(shape, scale_.options());
      return {scale_.detach().reshape(shape), zero};
    }
  }
  return {};
}

void FakeQuantizerImpl::set_cache_frozen(bool on) {
  cfg_.cache_frozen = on;
  if (!on) cached_in_ = cached_out_ = at::Tensor();
}

at::Tensor FakeQuantizerImpl::dynamic(const at::Tensor& x) {
  if (cfg_.range.method == RangeMethod::kMinMax) return fake_quant_dynamic(x, cfg_.spec, cfg_.grad);
  return fake_quant(x, cfg_.spec, range_qparams(x, cfg_.spec, cfg_.range), cfg_.grad);
}

// The dynamic result is a function of x alone; a weight without gradient gives no autograd graph
// to rebuild, so the same x (same tensor, storage and version: no in-place change, no load, no
// set_data) gives the same tensor back. Activations are never cached: they change every call.
at::Tensor FakeQuantizerImpl::dynamic_frozen(const at::Tensor& x) {
  const bool cacheable = cfg_.cache_frozen && for_weight_ && !x.requires_grad();
  if (!cacheable) {
    cached_in_ = cached_out_ = at::Tensor();
    return dynamic(x);
  }
  if (cached_out_.defined() && x.unsafeGetTensorImpl() == cached_in_.unsafeGetTensorImpl() &&
      x._version() == cached_version_ && x.data_ptr() == cached_data_)
    return cached_out_;
  cached_out_ = dynamic(x);
  cached_in_ = x;
  cached_version_ = x._version();
  cached_data_ = x.data_ptr();
  return cached_out_;
}

at::Tensor FakeQuantizerImpl::forward(const at::Tensor& x) {
  const bool training = is_training();
  // A checkpointed layer runs twice per step (nn::checkpoint): the second run sees the step and
  // the observer exactly as the first one left them, and changes neither.
  const bool recompute = training && recomputing();
  const int64_t step = step_.item<int64_t>() - (recompute ? 1 : 0);
  if (training && !recompute) step_.add_(1);
  if (!cfg_.enabled || step < cfg_.delay_steps) return x;

  switch (cfg_.scale_mode) {
    case ScaleMode::kDynamic:
      return dynamic_frozen(x);
    case ScaleMode::kStatic: {
      const bool frozen = cfg_.freeze_observer_after >= 0 && step >= cfg_.freeze_observer_after;
      if ((training && !frozen && !recompute) || !observer_->has_range()) observer_->update(x);
      return fake_quant(x, cfg_.spec, observer_->qparams(), cfg_.grad);
    }
    case ScaleMode::kLearnable: {
      if (!initialized_.item<bool>()) init_learnable(x);
      const double gf = lsq_grad_factor(cfg_.spec, x.sizes());
      const auto shape = cfg_.spec.scale_shape(x.sizes());
      if (scheme::is_kquant(cfg_.spec.format))
        return fake_quant_kquant_learned(x, kquant_learned(), cfg_.spec);
      if (learns_block_scales(cfg_.spec.format))
        return fake_quant_gguf_learned(
            x, scale_.reshape(shape),
            zero_point_.defined() ? zero_point_.reshape(shape) : at::Tensor(), cfg_.spec, gf);
      return fake_quant_lsq(x, scale_.reshape(shape),
                            zero_point_.defined() ? zero_point_.reshape(shape) : at::Tensor(),
                            cfg_.spec, gf);
    }
  }
  return x;
}

}  // namespace qat::fake_quant
