// FakeQuantizer: one tensor's fake quantization as a module -- a spec, how its scales are set
// (dynamic per call, a static observer, or learned with LSQ), its gradient, and a delay.
#pragma once

#include <torch/nn/module.h>

#include "qat/fake_quant/fake_quant.h"
#include "qat/fake_quant/observer.h"

namespace qat::fake_quant {

enum class ScaleMode {
  kDynamic,  // qparams from the tensor itself every call (weights per step, activations per token)
  kStatic,   // qparams from an observer: updated in training until frozen, fixed in eval
  kLearnable,  // LSQ (int) / LSQ+ (uint): scale (and zero point) are trainable parameters;
               // ggml block formats: each block's d (and m) trainable, stored as fp16
};
ScaleMode scale_mode_from_name(const std::string& name);
std::string to_string(ScaleMode m);

struct FakeQuantizerConfig {
  scheme::QuantSpec spec;
  bool enabled = true;
  ScaleMode scale_mode = ScaleMode::kDynamic;
  RangeConfig range;               // how ranges are set (dynamic, static, and LSQ's init)
  GradMode grad = GradMode::kSte;  // kDynamic/kStatic only; LSQ has its own gradients
  Observer::Mode observer_mode = Observer::Mode::kMovingAverage;
  double observer_momentum = 0.01;
  int64_t delay_steps = 0;             // training steps before fake quant starts (identity before)
  int64_t freeze_observer_after = -1;  // kStatic: stop updating after N steps (-1: never)
  // A frozen weight (kDynamic scales, no gradient: QAT + LoRA's base) quantizes to the same tensor
  // every step; keep that tensor and reuse it while the weight is unchanged. Costs one quantized
  // copy of the weight between steps (without activation checkpointing, the step saves that copy
  // for its backward anyway).
  bool cache_frozen = true;
  void validate() const;
};

class FakeQuantizerImpl : public torch::nn::Module {
 public:
  // `like`: a tensor shaped like the ones this quantizer will see (the weight for weights), used to
  // size learnable scales and initialise them from the range. Undefined for activations, whose
  // learnable scale is per-tensor and initialised from the first training batch.
  FakeQuantizerImpl(FakeQuantizerConfig cfg, const at::Tensor& like = {});

  at::Tensor forward(const at::Tensor& x);

  // The qparams the forward uses for x now (eval semantics: no observer update, no step).
  ops::QParams qparams_for(const at::Tensor& x) const;
  // k-quants: the blocks the forward dequantizes for w now (ggml's search on w, or the learned
  // parameters with w coded against them), as a GGUF tensor holds them.
  at::Tensor kquant_blocks(const at::Tensor& w) const;
  // Learned k-quants: the parameters (views of this module's).
  KQuantLearned kquant_learned() const;
  // Whether the forward currently quantizes (enabled and past the delay).
  bool active() const;

  const FakeQuantizerConfig& config() const { return cfg_; }
  void set_enabled(bool on) { cfg_.enabled = on; }
  void set_cache_frozen(bool on);
  int64_t step() const { return step_.item<int64_t>(); }
  // The trainer counts optimizer steps, not forwards: it sets the step before each micro-step so
  // delay and freeze do not depend on gradient accumulation.
  void set_step(int64_t step) { step_.fill_(step); }
  // The static-range observer (kStatic), else null; its range is checkpoint state.
  Observer* observer() const { return observer_.get(); }

 private:
  void init_learnable(const at::Tensor& x);
  // kDynamic on a weight that needs no gradient: the cached result when x is unchanged.
  at::Tensor dynamic_frozen(const at::Tensor& x);
  at::Tensor dynamic(const at::Tensor& x);

  FakeQuantizerConfig cfg_;
  std::unique_ptr<Observer> observer_;
  at::Tensor step_;        // buffer: training forwards seen (drives delay and freeze)
  at::Tensor scale_;       // parameter (kLearnable)
  at::Tensor zero_point_;  // parameter (kLearnable, uint; ggml block and k-quant mins)
  at::Tensor sub_scale_;   // parameters (kLearnable k-quants): sub-block scales and mins
  at::Tensor sub_min_;
  at::Tensor initialized_;   // buffer (kLearnable): scale set from data yet
  bool for_weight_ = false;  // built with `like`: sees one tensor, the weight, every call
  // cache_frozen: the weight last quantized (its version and storage) and the result.
  at::Tensor cached_in_, cached_out_;
  int64_t cached_version_ = -1;
  const void* cached_data_ = nullptr;
};
TORCH_MODULE(FakeQuantizer);

}  // namespace qat::fake_quant
