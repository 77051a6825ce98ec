// The chunked loss over the output head (cross-entropy, distillation and their mix): the loss and
// its gradients against a float64 implementation written here in plain loops (and central finite
// differences of it), chunked against unchunked autograd, and the losses on a whole model against
// whole logits.
#include <cmath>
#include <vector>

#include "tests/support/catch_torch.h"
#include "tests/support/helpers.h"
#include "tests/trainers/trainer_test_util.h"
#include "trainers/distill.h"
#include "trainers/head_loss.h"

using namespace qat;

namespace {

// The loss of head_loss.h in float64 loops: h (n, d), W (V, d), targets (n), teacher th (n, dt),
// tW (V, dt).
double reference_loss(const std::vector<double>& h, const std::vector<double>& w,
                      const std::vector<int64_t>& y, const std::vector<double>& th,
                      const std::vector<double>& tw, int64_t n, int64_t d, int64_t dt, int64_t v,
                      double tau, double ce_weight) {
  double total = 0;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<double> z(v), u(v);
    for (int64_t k = 0; k < v; ++k) {
      for (int64_t j = 0; j < d; ++j) z[k] += h[i * d + j] * w[k * d + j];
      for (int64_t j = 0; j < dt; ++j) u[k] += th[i * dt + j] * tw[k * dt + j];
    }
    auto log_softmax = [&](const std::vector<double>& x, double t) {
      double m = -INFINITY;
      for (double e : x) m = std::max(m, e / t);
      double s = 0;
      for (double e : x) s += std::exp(e / t - m);
      std::vector<double> out(x.size());
      for (size_t k = 0; k < x.size(); ++k) out[k] = x[k] / t - m - std::log(s);
      return out;
    };
    const auto ce = log_softmax(z, 1.0);
    const auto lp = log_softmax(z, tau), lq = log_softmax(u, tau);
    double kl = 0;
    for (int64_t k = 0; k < v; ++k) kl += std::exp(lq[k]) * (lq[k] - lp[k]);
    total += (1 - ce_weight) * tau * tau * kl - ce_weight * ce[y[i]];
  }
  return total;
}

std::vector<double> to_vec(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

// max |a - b| relative to max |b|.
double rel_diff(const at::Tensor& a, const at::Tensor& b) {
  const double scale = std::max(1e-30, b.abs().max().item<double>());
  return (a.to(at::kDouble) - b.to(at::kDouble)).abs().max().item<double>() / scale;
}

struct Problem {
  at::Tensor h, w, b, y, th, tw;
};

Problem random_problem(int64_t n, int64_t d, int64_t v, uint64_t seed, bool bias = false) {
  Problem p;
  p.h = test::randn({n, d}, seed).requires_grad_(true);
  p.w = test::randn({v, d}, seed + 1, 0.5).requires_grad_(true);
  if (bias) p.b = test::randn({v}, seed + 2, 0.3).requires_grad_(true);
  at::Generator gen = at::detail::createCPUGenerator(seed + 3);
  p.y = at::randint(v, {n}, gen, at::kLong);
  p.th = test::randn({n, d + 3}, seed + 4);
  p.tw = test::randn({v, d + 3}, seed + 5, 0.5);
  return p;
}

}  // namespace

TEST_CASE("the head loss and its gradient equal a float64 reference and its finite differences",
          "[loss][distill]") {
  const int64_t n = 7, d = 5, v = 11;
  const double tau = GENERATE(1.0, 2.0);
  const double ce_weight = GENERATE(0.0, 0.25, 1.0);
  CAPTURE(tau, ce_weight);
  const Problem p = random_problem(n, d, v, 40);
  train::HeadLossOptions o;
  o.temperature = tau;
  o.ce_weight = ce_weight;
  o.chunk_rows = 3;  // chunks of 3, 3 and 1 rows
  const at::Tensor loss = train::head_loss_sum(p.h, {p.w, at::Tensor()}, p.y,
                                               train::TeacherRows{p.th, {p.tw, at::Tensor()}}, o);
  loss.backward();

  const std::vector<double> h = to_vec(p.h), w = to_vec(p.w), th = to_vec(p.th), tw = to_vec(p.tw);
  const at::Tensor yc = p.y.contiguous();
  const std::vector<int64_t> y(yc.data_ptr<int64_t>(), yc.data_ptr<int64_t>() + n);
  auto f = [&](const std::vector<double>& hh, const std::vector<double>& ww) {
    return reference_loss(hh, ww, y, th, tw, n, d, d + 3, v, tau, ce_weight);
  };
  const double ref = f(h, w);
  CHECK(loss.item<double>() == Approx(ref).epsilon(1e-6));

  // Central differences in float64 for every element of h and W.
  const double eps = 1e-6;
  auto numeric = [&](std::vector<double> x, bool of_h) {
    std::vector<double> g(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      const double x0 = x[i];
      x[i] = x0 + eps;
      const double up = of_h ? f(x, w) : f(h, x);
      x[i] = x0 - eps;
      const double down = of_h ? f(x, w) : f(h, x);
      x[i] = x0;
      g[i] = (up - down) / (2 * eps);
    }
    return at::tensor(g, at::kDouble);
  };
  const at::Tensor gh = numeric(h, true).view({n, d}), gw = numeric(w, false).view({v, d});
  CHECK(rel_diff(p.h.grad(), gh) < 1e-5);
  CHECK(rel_diff(p.w.grad(), gw) < 1e-5);
}

TEST_CASE("the chunked head loss equals the unchunked one, loss and gradients", "[loss][distill]") {
  const int64_t n = 23, d = 16, v = 301;
  const int64_t chunk = GENERATE(1, 4, 10, 23, 0);
  const double ce_weight = GENERATE(0.0, 0.5, 1.0);
  const bool bias = GENERATE(false, true);
  CAPTURE(chunk, ce_weight, bias);
  train::HeadLossOptions o;
  o.temperature = 1.5;
  o.ce_weight = ce_weight;
  o.chunk_rows = chunk;
  const Problem a = random_problem(n, d, v, 7, bias);
  const Problem b = random_problem(n, d, v, 7, bias);
  const at::Tensor chunked =
      train::head_loss_sum(a.h, {a.w, a.b}, a.y, train::TeacherRows{a.th, {a.tw, at::Tensor()}}, o);
  const at::Tensor whole =
      train::head_loss_sum_unchunked(at::linear(b.h, b.w, b.b), b.y, at::linear(b.th, b.tw), o);
  // The incoming gradient is not 1, as in training (the trainer divides by the target count).
  (chunked / 17.0).backward();
  (whole / 17.0).backward();
  CHECK(chunked.item<double>() == Approx(whole.item<double>()).epsilon(1e-6));
  CHECK(rel_diff(a.h.grad(), b.h.grad()) < 1e-6);
  CHECK(rel_diff(a.w.grad(), b.w.grad()) < 1e-6);
  if (bias) CHECK(rel_diff(a.b.grad(), b.b.grad()) < 1e-6);
}

TEST_CASE("a frozen head or hidden state gets no gradient, and bad inputs are clear errors",
          "[loss][distill]") {
  const Problem p = random_problem(5, 4, 9, 3);
  const at::Tensor frozen_w = p.w.detach();
  train::HeadLossOptions o;  // cross-entropy
  const at::Tensor loss = train::head_loss_sum(p.h, {frozen_w, at::Tensor()}, p.y, {}, o);
  loss.backward();
  CHECK(p.h.grad().defined());
  CHECK_FALSE(p.w.grad().defined());
  o.ce_weight = 0.5;
  CHECK_THROWS_WITH(train::head_loss_sum(p.h, {p.w, at::Tensor()}, p.y, {}, o),
                    Catch::Contains("needs the teacher"));
  o.temperature = 0;
  CHECK_THROWS_WITH(train::head_loss_sum(p.h, {p.w, at::Tensor()}, p.y, {}, o),
                    Catch::Contains("temperature must be > 0"));
  o = {};
  CHECK_THROWS_WITH(
      train::head_loss_sum(p.h, {p.w, at::Tensor()}, p.y.narrow(0, 0, 4), std::nullopt, o),
      Catch::Contains("one target per hidden row"));
  o.ce_weight = 0;
  const train::TeacherRows other_vocab{p.th, {test::randn({8, 7}, 1), at::Tensor()}};
  CHECK_THROWS_WITH(train::head_loss_sum(p.h, {p.w, at::Tensor()}, p.y, other_vocab, o),
                    Catch::Contains("same vocabulary"));
}

TEST_CASE("on a whole model the chunked losses equal whole-logit autograd, masks included",
          "[loss][distill]") {
  const std::string dir = test::temp_dir();
  const bool tied = GENERATE(false, true);
  CAPTURE(tied);
  auto make = [&](uint64_t seed) {
    at::manual_seed(seed);
    return std::make_shared<models::LlamaForCausalLM>(
        test::tiny_llama_config(test::kTinyVocab, false, tied));
  };
  const train::SequenceSet data = test::tiny_sequences(3, 16, 5);  // every 7th label masked
  const train::Batch batch{data.tokens, data.labels, nullptr};
  auto teacher = make(1);
  auto a = make(2), b = make(2);
  train::HeadLossOptions o;
  o.temperature = 2.0;
  o.ce_weight = 0.3;
  o.chunk_rows = 5;
  const at::Tensor chunked = train::distillation_loss(teacher, o)(*a, batch);

  // Whole logits, masked positions dropped by hand.
  const at::Tensor zs = b->forward(data.tokens);
  at::Tensor zt;
  {
    c10::NoGradGuard no_grad;
    zt = teacher->forward(data.tokens);
  }
  const int64_t t = data.tokens.size(1);
  const at::Tensor next = data.labels.narrow(1, 1, t - 1).reshape({-1});
  const at::Tensor keep = next.ne(-100).nonzero().squeeze(1);
  auto rows = [&](const at::Tensor& z) {
    return z.narrow(1, 0, t - 1).reshape({-1, z.size(-1)}).index_select(0, keep);
  };
  const at::Tensor whole =
      train::head_loss_sum_unchunked(rows(zs), next.index_select(0, keep), rows(zt), o);
  CHECK(chunked.item<double>() == Approx(whole.item<double>()).epsilon(1e-6));
  chunked.backward();
  whole.backward();
  const auto pa = a->named_parameters(), pb = b->named_parameters();
  for (const auto& item : pa) {
    CAPTURE(item.key());
    CHECK(rel_diff(item.value().grad(), pb[item.key()].grad()) < 1e-5);
  }
  for (const auto& p : teacher->parameters()) CHECK_FALSE(p.grad().defined());

  // Cross-entropy alone: the trainer's default loss, chunked.
  a->zero_grad();
  const at::Tensor ce = train::chunked_cross_entropy(4)(*a, batch);
  const at::Tensor ce_ref = train::next_token_loss_sum(*a, batch);
  CHECK(ce.item<double>() == Approx(ce_ref.item<double>()).epsilon(1e-6));
}

TEST_CASE("a student identical to its teacher has zero distillation loss and gradient",
          "[loss][distill]") {
  at::manual_seed(9);
  auto teacher =
      std::make_shared<models::LlamaForCausalLM>(test::tiny_llama_config(test::kTinyVocab, false));
  at::manual_seed(9);
  auto student =
      std::make_shared<models::LlamaForCausalLM>(test::tiny_llama_config(test::kTinyVocab, false));
  const train::SequenceSet data = test::tiny_sequences(2, 12, 8);
  train::HeadLossOptions o;
  o.ce_weight = 0;
  o.temperature = 1.7;
  const at::Tensor loss =
      train::distillation_loss(teacher, o)(*student, {data.tokens, data.labels, nullptr});
  CHECK(loss.item<float>() == 0.0f);
  loss.backward();
  for (const auto& p : student->parameters()) CHECK(p.grad().abs().max().item<float>() == 0.0f);
}
