#include "qat/models/rope.h"

#include <cmath>

namespace qat::models {

// The float32 operations below follow transformers' order (modeling_rope_utils.py) so the
// tables agree to the last bit on CPU: theta^(arange(0, d, 2)/d), reciprocal, then the scaling.
at::Tensor rope_inv_freq(const LlamaConfig& cfg) {
  const int64_t d = cfg.head_dim;
  const at::Tensor exponent =
      at::arange(0, d, 2, at::kLong).to(at::kFloat) / static_cast<double>(d);
  at::Tensor inv_freq = at::pow(cfg.rope_theta, exponent).reciprocal();
  const RopeScaling& s = cfg.rope_scaling;
  if (s.type == "linear") return inv_freq / s.factor;
  if (s.type != "llama3") return inv_freq;

  // Llama 3: wavelengths longer than original/low_freq_factor are slowed down by `factor`,
  // shorter than original/high_freq_factor are kept, and the band between is interpolated:
  //   smooth = (original / wavelen - low) / (high - low)
  //   inv    = (1 - smooth) * inv / factor + smooth * inv
  const double original = static_cast<double>(s.original_max_position_embeddings);
  const double low_wavelen = original / s.low_freq_factor;
  const double high_wavelen = original / s.high_freq_factor;
  const at::Tensor wavelen = inv_freq.reciprocal() * (2 * M_PI);
  at::Tensor scaled = at::where(wavelen > low_wavelen, inv_freq / s.factor, inv_freq);
  const at::Tensor smooth = (wavelen.reciprocal() * original - s.low_freq_factor) /
                            (s.high_freq_factor - s.low_freq_factor);
  const at::Tensor smoothed = (1 - smooth) * scaled / s.factor + smooth * scaled;
  const at::Tensor medium = (wavelen >= high_wavelen).logical_and(wavelen <= low_wavelen);
  return at::where(medium, smoothed, scaled);
}

std::pair<at::Tensor, at::Tensor> rope_cos_sin(const at::Tensor& inv_freq,
                                               const at::Tensor& positions) {
  // (T, 1) * (1, D/2): one product per entry, the same bits as transformers' batched matmul.
  const at::Tensor freqs =
      positions.to(inv_freq.device(), at::kFloat).unsqueeze(1) * inv_freq.unsqueeze(0);
  const at::Tensor emb = at::cat({freqs, freqs}, -1);
  return {emb.cos(), emb.sin()};
}

at::Tensor apply_rope(const at::Tensor& x, const at::Tensor& cos, const at::Tensor& sin) {
  const int64_t half = x.size(-1) / 2;
  const at::Tensor rotated = at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
  const at::Tensor c = cos.to(x.scalar_type()), s = sin.to(x.scalar_type());
  return x * c + rotated * s;
}

}  // namespace qat::models
