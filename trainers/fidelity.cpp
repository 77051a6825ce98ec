#include "trainers/fidelity.h"

#include <c10/core/GradMode.h>

#include <algorithm>
#include <cmath>

#include "qat/models/llama.h"
#include "trainers/metrics/format.h"
#include "trainers/metrics/table.h"

namespace qat::train {
namespace {

// llama-perplexity's mean and its standard error from a sum and a sum of squares.
std::pair<double, double> mean_and_uncertainty(double sum, double sum2, int64_t n) {
  if (n < 1) return {0.0, 0.0};
  const double f = sum / static_cast<double>(n);
  double df = sum2 / static_cast<double>(n) - f * f;
  df = df > 0 && n > 10 ? std::sqrt(df / static_cast<double>(n - 1)) : 0.0;
  return {f, df};
}

double covariance(double suma, double sumb, double sumab, int64_t n) {
  if (n < 10) return 0.0;
  const double dn = static_cast<double>(n);
  return (sumab / dn - (suma / dn) * (sumb / dn)) / (dn - 1);
}

std::vector<double> to_vector(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kDouble).cpu().contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

// Logits (rows, vocab) in float32 at positions [first, last) of a (1, T) chunk.
at::Tensor chunk_logits(models::LlamaForCausalLM& m, const at::Tensor& ids, int64_t first,
                        int64_t last) {
  const at::Tensor h = m.model().forward(ids);  // (1, T, hidden)
  return m.logits(h[0].narrow(0, first, last - first)).to(at::kFloat);
}

// Both models in eval mode without gradients while alive; their modes restored after.
class EvalModeGuard {
 public:
  EvalModeGuard(models::LlamaForCausalLM& a, models::LlamaForCausalLM& b)
      : a_(a), b_(b), a_training_(a.is_training()), b_training_(b.is_training()) {
    a_.eval();
    b_.eval();
  }
  ~EvalModeGuard() {
    if (a_training_) a_.train();
    if (b_training_) b_.train();
  }
  EvalModeGuard(const EvalModeGuard&) = delete;
  EvalModeGuard& operator=(const EvalModeGuard&) = delete;

 private:
  models::LlamaForCausalLM& a_;
  models::LlamaForCausalLM& b_;
  bool a_training_, b_training_;
  c10::NoGradGuard no_grad_;
};

}  // namespace

double percentile_sorted(const std::vector<double>& sorted, double fraction) {
  TORCH_CHECK(!sorted.empty(), "percentile of no values");
  if (fraction <= 0) return sorted.front();
  if (fraction >= 1) return sorted.back();
  double p = fraction * static_cast<double>(sorted.size() - 1);
  const size_t ip = static_cast<size_t>(p);
  p -= static_cast<double>(ip);
  return (1 - p) * sorted[ip] + p * sorted[std::min(ip + 1, sorted.size() - 1)];
}

void FidelityAccumulator::add(const at::Tensor& logits, const at::Tensor& reference_logits,
                              const at::Tensor& targets) {
  TORCH_CHECK(logits.dim() == 2 && logits.sizes() == reference_logits.sizes(),
              "fidelity: both models' logits must be (rows, vocab) of one shape, got ",
              logits.sizes(), " and ", reference_logits.sizes());
  TORCH_CHECK(targets.dim() == 1 && targets.size(0) == logits.size(0),
              "fidelity: one target per row expected");
  constexpr int64_t kRows = 32;  // float64 (rows, vocab) blocks
  for (int64_t r0 = 0; r0 < logits.size(0); r0 += kRows) {
    const int64_t n = std::min(kRows, logits.size(0) - r0);
    const at::Tensor z = logits.narrow(0, r0, n), zb = reference_logits.narrow(0, r0, n);
    const at::Tensor y = targets.narrow(0, r0, n).to(logits.device(), at::kLong).unsqueeze(1);
    const at::Tensor lq = at::log_softmax(z.to(at::kDouble), 1);
    const at::Tensor lb = at::log_softmax(zb.to(at::kDouble), 1);
    const at::Tensor nll = -lq.gather(1, y).squeeze(1);
    const at::Tensor nll_base = -lb.gather(1, y).squeeze(1);
    const at::Tensor kld = (lb.exp() * (lb - lq)).sum(1);
    const at::Tensor dp = at::exp(-nll) - at::exp(-nll_base);
    same_top1_ += z.argmax(1).eq(zb.argmax(1)).sum().item<int64_t>();
    for (auto [dst, src] : {std::pair{&nll_, &nll}, std::pair{&nll_base_, &nll_base},
                            std::pair{&kld_, &kld}, std::pair{&dp_, &dp}}) {
      const std::vector<double> v = to_vector(*src);
      dst->insert(dst->end(), v.begin(), v.end());
    }
  }
}

FidelityReport FidelityAccumulator::finish(int64_t chunks, int64_t context) const {
  TORCH_CHECK(!kld_.empty(), "fidelity: no tokens were scored");
  const int64_t n = static_cast<int64_t>(kld_.size());
  double s_nll = 0, s_nll2 = 0, s_base = 0, s_base2 = 0, s_cross = 0, s_kld = 0, s_kld2 = 0;
  double s_dp = 0, s_dp2 = 0, s_dp4 = 0;
  for (size_t i = 0; i < kld_.size(); ++i) {
    s_nll += nll_[i];
    s_nll2 += nll_[i] * nll_[i];
    s_base += nll_base_[i];
    s_base2 += nll_base_[i] * nll_base_[i];
    s_cross += nll_[i] * nll_base_[i];
    s_kld += kld_[i];
    s_kld2 += kld_[i] * kld_[i];
    s_dp += dp_[i];
    s_dp2 += dp_[i] * dp_[i];
    s_dp4 += dp_[i] * dp_[i] * dp_[i] * dp_[i];
  }
  FidelityReport r;
  r.chunks = chunks;
  r.context = context;
  r.tokens = n;
  const auto log_ppl = mean_and_uncertainty(s_nll, s_nll2, n);
  const auto log_ppl_base = mean_and_uncertainty(s_base, s_base2, n);
  r.ppl = std::exp(log_ppl.first);
  r.ppl_base = std::exp(log_ppl_base.first);
  r.delta_ppl = r.ppl - r.ppl_base;
  r.ln_ppl_ratio = log_ppl.first - log_ppl_base.first;
  r.ln_ppl_ratio_unc = std::sqrt(std::max(0.0, log_ppl.second * log_ppl.second +
                                                   log_ppl_base.second * log_ppl_base.second -
                                                   2.0 * covariance(s_nll, s_base, s_cross, n)));
  const auto kld = mean_and_uncertainty(s_kld, s_kld2, n);
  r.kld_mean = kld.first;
  r.kld_unc = kld.second;
  std::vector<double> sorted = kld_;
  std::sort(sorted.begin(), sorted.end());
  const size_t m = sorted.size();
  r.kld_median = m % 2 == 0 ? 0.5 * (sorted[m / 2] + sorted[m / 2 - 1]) : sorted[m / 2];
  r.kld_p99 = percentile_sorted(sorted, 0.99);
  r.kld_p999 = percentile_sorted(sorted, 0.999);
  r.kld_max = sorted.back();
  r.dp_mean = s_dp / static_cast<double>(n);
  const auto mse = mean_and_uncertainty(s_dp2, s_dp4, n);
  r.dp_rms = std::sqrt(mse.first);
  r.dp_rms_unc = r.dp_rms > 0 ? 0.5 / r.dp_rms * mse.second : 0.0;
  r.same_top1 = static_cast<double>(same_top1_) / static_cast<double>(n);
  r.same_top1_unc =
      n > 1 ? std::sqrt(r.same_top1 * (1 - r.same_top1) / static_cast<double>(n - 1)) : 0.0;
  return r;
}

nlohmann::json FidelityReport::to_json() const {
  return {{"chunks", chunks},
          {"context", context},
          {"tokens", tokens},
          {"ppl", ppl},
          {"ppl_base", ppl_base},
          {"delta_ppl", delta_ppl},
          {"ln_ppl_ratio", ln_ppl_ratio},
          {"ln_ppl_ratio_unc", ln_ppl_ratio_unc},
          {"kld_mean", kld_mean},
          {"kld_unc", kld_unc},
          {"kld_median", kld_median},
          {"kld_p99", kld_p99},
          {"kld_p999", kld_p999},
          {"kld_max", kld_max},
          {"dp_mean", dp_mean},
          {"dp_rms", dp_rms},
          {"dp_rms_unc", dp_rms_unc},
          {"same_top1", same_top1},
          {"same_top1_unc", same_top1_unc}};
}

std::string FidelityReport::to_text() const {
  Table t("fidelity: " + std::to_string(chunks) + " chunks of " + std::to_string(context) +
          " tokens, " + std::to_string(tokens) + " scored");
  t.add_column("");
  t.add_column("value", NumberFormat::fixed(6));
  t.add_column("±", NumberFormat::fixed(6));
  t.add_row({"PPL (model)", ppl, ""});
  t.add_row({"PPL (reference)", ppl_base, ""});
  t.add_row({"ΔPPL", delta_ppl, ""});
  t.add_row({"ln(PPL / PPL ref)", ln_ppl_ratio, ln_ppl_ratio_unc});
  t.add_separator();
  t.add_row({"mean KLD", kld_mean, kld_unc});
  t.add_row({"median KLD", kld_median, ""});
  t.add_row({"99% KLD", kld_p99, ""});
  t.add_row({"99.9% KLD", kld_p999, ""});
  t.add_row({"max KLD", kld_max, ""});
  t.add_separator();
  t.add_row({"mean Δp %", 100 * dp_mean, ""});
  t.add_row({"RMS Δp %", 100 * dp_rms, 100 * dp_rms_unc});
  t.add_row({"same top-1 %", 100 * same_top1, 100 * same_top1_unc});
  return t.to_text();
}

FidelityReport compare_models(models::LlamaForCausalLM& model, models::LlamaForCausalLM& reference,
                              const std::vector<int32_t>& tokens, std::optional<int32_t> bos,
                              const FidelityOptions& options) {
  const int64_t n_ctx = options.context;
  TORCH_CHECK(n_ctx >= 4, "fidelity: the context must be at least 4 tokens, got ", n_ctx);
  TORCH_CHECK(model.config().vocab_size == reference.config().vocab_size,
              "fidelity: the model has ", model.config().vocab_size, " tokens and the reference ",
              reference.config().vocab_size, ": compare models with the same vocabulary");
  const int64_t total = static_cast<int64_t>(tokens.size());
  TORCH_CHECK(total >= 2 * n_ctx, "fidelity: the text has ", total, " tokens; a context of ", n_ctx,
              " needs at least ", 2 * n_ctx, " (use a longer text or a smaller context)");
  int64_t n_chunk = total / n_ctx;
  if (options.chunks > 0) n_chunk = std::min(n_chunk, options.chunks);
  EvalModeGuard modes(model, reference);
  const at::Device device = model.parameters().front().device();
  const at::Device ref_device = reference.parameters().front().device();
  const int64_t first = n_ctx / 2;
  FidelityAccumulator acc;
  const at::Tensor all = at::tensor(tokens, at::kInt).to(at::kLong);
  for (int64_t c = 0; c < n_chunk; ++c) {
    at::Tensor ids = all.narrow(0, c * n_ctx, n_ctx).clone().unsqueeze(0);  // (1, n_ctx)
    if (bos) ids[0][0] = static_cast<int64_t>(*bos);
    const at::Tensor z = chunk_logits(model, ids.to(device), first, n_ctx - 1);
    const at::Tensor zb = chunk_logits(reference, ids.to(ref_device), first, n_ctx - 1).to(device);
    acc.add(z, zb, ids[0].narrow(0, first + 1, n_ctx - 1 - first).to(device));
  }
  return acc.finish(n_chunk, n_ctx);
}

FidelityReport compare_on_sequences(models::LlamaForCausalLM& model,
                                    models::LlamaForCausalLM& reference, const SequenceSet& data,
                                    int64_t max_sequences, int64_t batch) {
  TORCH_CHECK(batch >= 1, "fidelity: the batch must be >= 1");
  const int64_t n = max_sequences > 0 ? std::min(max_sequences, data.size()) : data.size();
  TORCH_CHECK(n > 0, "fidelity: no sequences to compare");
  EvalModeGuard modes(model, reference);
  const at::Device device = model.parameters().front().device();
  const at::Device ref_device = reference.parameters().front().device();
  FidelityAccumulator acc;
  for (int64_t b0 = 0; b0 < n; b0 += batch) {
    const int64_t m = std::min(batch, n - b0);
    const at::Tensor tokens = data.tokens.narrow(0, b0, m);
    const at::Tensor next = data.labels.narrow(0, b0, m).narrow(1, 1, data.seq_len() - 1);
    const at::Tensor index = next.reshape({-1}).ne(-100).nonzero().squeeze(1);
    auto logits = [&](models::LlamaForCausalLM& mdl, const at::Device& dev) {
      std::optional<models::PackedInputs> packed;
      if (data.positions.defined()) {
        packed = models::PackedInputs{data.positions.narrow(0, b0, m).to(dev),
                                      data.segments.narrow(0, b0, m).to(dev)};
      }
      const at::Tensor h =
          mdl.model().forward(tokens.to(dev), nullptr, std::nullopt, packed ? &*packed : nullptr);
      const at::Tensor rows = h.narrow(1, 0, h.size(1) - 1).reshape({-1, h.size(-1)});
      return mdl.logits(rows.index_select(0, index.to(dev))).to(at::kFloat);
    };
    acc.add(logits(model, device), logits(reference, ref_device).to(device),
            next.reshape({-1}).index_select(0, index).to(device));
  }
  return acc.finish(0, data.seq_len());
}

}  // namespace qat::train
