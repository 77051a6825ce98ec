// The fidelity report (trainers/fidelity.h): its statistics against a float64 implementation
// written here in plain loops, and llama-perplexity's chunking on a whole model (which positions
// are scored, BOS in every chunk). Against llama-perplexity itself: test_fidelity_llama_cpp.cpp.
#include <algorithm>
#include <cmath>
#include <vector>

#include "tests/support/catch_torch.h"
#include "tests/support/helpers.h"
#include "tests/trainers/trainer_test_util.h"
#include "trainers/fidelity.h"

using namespace qat;

namespace {

struct Reference {
  double ppl = 0, ppl_base = 0, kld_mean = 0, kld_median = 0, kld_p99 = 0, kld_max = 0;
  double dp_mean = 0, dp_rms = 0, same_top1 = 0;
};

// llama-perplexity's definitions in float64 loops over rows of logits.
Reference reference_stats(const at::Tensor& logits, const at::Tensor& ref_logits,
                          const at::Tensor& targets) {
  const at::Tensor z = logits.to(at::kDouble).contiguous();
  const at::Tensor zb = ref_logits.to(at::kDouble).contiguous();
  const int64_t rows = z.size(0), v = z.size(1);
  const double* pz = z.data_ptr<double>();
  const double* pb = zb.data_ptr<double>();
  std::vector<double> kld, nll, nll_base, dp;
  int64_t same = 0;
  for (int64_t i = 0; i < rows; ++i) {
    auto log_probs = [&](const double* x) {
      const double m = *std::max_element(x, x + v);
      double s = 0;
      for (int64_t k = 0; k < v; ++k) s += std::exp(x[k] - m);
      std::vector<double> out(static_cast<size_t>(v));
      for (int64_t k = 0; k < v; ++k) out[k] = x[k] - m - std::log(s);
      return out;
    };
    const auto lq = log_probs(pz + i * v), lb = log_probs(pb + i * v);
    const int64_t y = targets[i].item<int64_t>();
    double k = 0;
    for (int64_t j = 0; j < v; ++j) k += std::exp(lb[j]) * (lb[j] - lq[j]);
    kld.push_back(k);
    nll.push_back(-lq[y]);
    nll_base.push_back(-lb[y]);
    dp.push_back(std::exp(lq[y]) - std::exp(lb[y]));
    same += std::max_element(pz + i * v, pz + (i + 1) * v) - (pz + i * v) ==
            std::max_element(pb + i * v, pb + (i + 1) * v) - (pb + i * v);
  }
  auto mean = [](const std::vector<double>& x) {
    double s = 0;
    for (double e : x) s += e;
    return s / static_cast<double>(x.size());
  };
  Reference r;
  r.ppl = std::exp(mean(nll));
  r.ppl_base = std::exp(mean(nll_base));
  r.kld_mean = mean(kld);
  std::sort(kld.begin(), kld.end());
  const size_t n = kld.size();
  r.kld_median = n % 2 ? kld[n / 2] : (kld[n / 2 - 1] + kld[n / 2]) / 2;
  const double pos = 0.99 * static_cast<double>(n - 1);
  const size_t lo = static_cast<size_t>(std::floor(pos));
  r.kld_p99 = kld[lo] + (pos - static_cast<double>(lo)) * (kld[std::min(lo + 1, n - 1)] - kld[lo]);
  r.kld_max = kld.back();
  r.dp_mean = mean(dp);
  double sq = 0;
  for (double e : dp) sq += e * e;
  r.dp_rms = std::sqrt(sq / static_cast<double>(n));
  r.same_top1 = static_cast<double>(same) / static_cast<double>(n);
  return r;
}

}  // namespace

TEST_CASE("fidelity statistics equal a float64 implementation on random logits", "[fidelity]") {
  const int64_t rows = 301, vocab = 57;
  const at::Tensor base = test::randn({rows, vocab}, 21, 2.0);
  // A perturbed copy: most top-1s agree, some do not.
  const at::Tensor model = base + test::randn({rows, vocab}, 22, 0.7);
  at::Generator gen = at::detail::createCPUGenerator(23);
  const at::Tensor y = at::randint(vocab, {rows}, gen, at::kLong);
  train::FidelityAccumulator acc;
  acc.add(model.narrow(0, 0, 100), base.narrow(0, 0, 100), y.narrow(0, 0, 100));
  acc.add(model.narrow(0, 100, rows - 100), base.narrow(0, 100, rows - 100),
          y.narrow(0, 100, rows - 100));
  const train::FidelityReport r = acc.finish(3, 10);
  const Reference ref = reference_stats(model, base, y);
  CHECK(r.tokens == rows);
  CHECK(r.ppl == Approx(ref.ppl).epsilon(1e-12));
  CHECK(r.ppl_base == Approx(ref.ppl_base).epsilon(1e-12));
  CHECK(r.delta_ppl == Approx(ref.ppl - ref.ppl_base).epsilon(1e-10));
  CHECK(r.kld_mean == Approx(ref.kld_mean).epsilon(1e-12));
  CHECK(r.kld_median == Approx(ref.kld_median).epsilon(1e-12));
  CHECK(r.kld_p99 == Approx(ref.kld_p99).epsilon(1e-12));
  CHECK(r.kld_max == Approx(ref.kld_max).epsilon(1e-12));
  CHECK(r.dp_mean == Approx(ref.dp_mean).epsilon(1e-10));
  CHECK(r.dp_rms == Approx(ref.dp_rms).epsilon(1e-10));
  CHECK(r.same_top1 == Approx(ref.same_top1).epsilon(1e-12));
  CHECK(r.same_top1 > 0.3);
  CHECK(r.same_top1 < 1.0);
  CHECK(r.kld_mean > 0);
  CHECK(r.kld_unc > 0);
  const auto j = r.to_json();
  CHECK(j.at("kld_mean").get<double>() == r.kld_mean);
  CHECK(r.to_text().find("same top-1 %") != std::string::npos);
}

TEST_CASE("llama-perplexity's percentiles interpolate between sorted values", "[fidelity]") {
  const std::vector<double> v{1, 2, 4, 8};
  CHECK(train::percentile_sorted(v, 0) == 1);
  CHECK(train::percentile_sorted(v, 1) == 8);
  CHECK(train::percentile_sorted(v, 0.5) == Approx(3.0));  // 1.5 of 3 steps: 2 + 0.5 * 2
  CHECK(train::percentile_sorted(v, 0.99) == Approx(4 + 0.97 * 4));
}

TEST_CASE("compare_models scores the second half of each chunk with BOS first, as llama.cpp",
          "[fidelity]") {
  at::manual_seed(5);
  auto reference =
      std::make_shared<models::LlamaForCausalLM>(test::tiny_llama_config(test::kTinyVocab, false));
  at::manual_seed(6);
  auto model =
      std::make_shared<models::LlamaForCausalLM>(test::tiny_llama_config(test::kTinyVocab, false));
  at::Generator gen = at::detail::createCPUGenerator(7);
  const at::Tensor t = at::randint(1, test::kTinyVocab, {100}, gen, at::kInt);
  const std::vector<int32_t> tokens(t.data_ptr<int32_t>(), t.data_ptr<int32_t>() + 100);
  train::FidelityOptions o;
  o.context = 16;  // 6 whole chunks, 7 scored tokens each

  const train::FidelityReport same = train::compare_models(*model, *model, tokens, 0, o);
  CHECK(same.chunks == 6);
  CHECK(same.tokens == 6 * 7);
  CHECK(same.kld_mean == 0);
  CHECK(same.same_top1 == 1);
  CHECK(same.ppl == same.ppl_base);

  const train::FidelityReport r = train::compare_models(*model, *reference, tokens, 0, o);
  // By hand: chunk c is tokens [16c, 16c + 16) with token 0 (BOS) first; logits at positions
  // 8..14 predict tokens 9..15.
  c10::NoGradGuard no_grad;
  std::vector<at::Tensor> zs, zbs, ys;
  for (int64_t c = 0; c < 6; ++c) {
    at::Tensor ids = t.narrow(0, 16 * c, 16).to(at::kLong).clone();
    ids[0] = 0;
    zs.push_back(model->forward(ids.unsqueeze(0))[0].narrow(0, 8, 7));
    zbs.push_back(reference->forward(ids.unsqueeze(0))[0].narrow(0, 8, 7));
    ys.push_back(ids.narrow(0, 9, 7));
  }
  const Reference ref = reference_stats(at::cat(zs), at::cat(zbs), at::cat(ys));
  CHECK(r.ppl == Approx(ref.ppl).epsilon(1e-6));
  CHECK(r.ppl_base == Approx(ref.ppl_base).epsilon(1e-6));
  CHECK(r.kld_mean == Approx(ref.kld_mean).epsilon(1e-5));
  CHECK(r.same_top1 == Approx(ref.same_top1));
  o.chunks = 2;
  CHECK(train::compare_models(*model, *reference, tokens, 0, o).tokens == 14);
  o.context = 64;
  CHECK_THROWS_WITH(train::compare_models(*model, *reference, tokens, 0, o),
                    Catch::Contains("needs at least 128"));
}
