// AdamW against libtorch's torch::optim::AdamW (an independent implementation), and the
// learning-rate schedules against their formulas.
#include <torch/optim/adamw.h>

#include <cmath>

#include "tests/support/catch_torch.h"
#include "tests/support/helpers.h"
#include "trainers/lr_schedule.h"
#include "trainers/optimizer.h"

using namespace qat;

TEST_CASE("AdamW matches torch::optim::AdamW, decay only on matrices", "[optimizer]") {
  at::Tensor w = qat::test::randn({8, 16}, 1).requires_grad_();
  at::Tensor b = qat::test::randn({8}, 2).requires_grad_();
  at::Tensor w_ref = w.detach().clone().requires_grad_();
  at::Tensor b_ref = b.detach().clone().requires_grad_();
  train::AdamWConfig cfg;
  cfg.weight_decay = 0.1;
  train::AdamW ours({{"layer.weight", w}, {"layer.bias", b}}, cfg);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<at::Tensor>{w_ref},
                      std::make_unique<torch::optim::AdamWOptions>(
                          torch::optim::AdamWOptions(1e-2).weight_decay(0.1)));
  groups.emplace_back(std::vector<at::Tensor>{b_ref},
                      std::make_unique<torch::optim::AdamWOptions>(
                          torch::optim::AdamWOptions(1e-2).weight_decay(0.0)));
  torch::optim::AdamW ref(std::move(groups), torch::optim::AdamWOptions(1e-2));
  for (int step = 0; step < 10; ++step) {
    const at::Tensor gw = qat::test::randn({8, 16}, 100 + step),
                     gb = qat::test::randn({8}, 200 + step);
    w.mutable_grad() = gw.clone();
    b.mutable_grad() = gb.clone();
    w_ref.mutable_grad() = gw.clone();
    b_ref.mutable_grad() = gb.clone();
    ours.step(1e-2);
    ref.step();
  }
  CHECK((w - w_ref).abs().max().item<double>() < 1e-6);
  CHECK((b - b_ref).abs().max().item<double>() < 1e-6);
  CHECK(ours.steps_taken() == 10);

  // State round trip; a state of other parameters is refused.
  train::AdamW other({{"layer.weight", w}, {"layer.bias", b}}, cfg);
  other.load_state_dict(ours.state_dict());
  CHECK(other.steps_taken() == 10);
  train::AdamW third({{"other.weight", w}}, cfg);
  CHECK_THROWS_WITH(third.load_state_dict(ours.state_dict()),
                    Catch::Contains("other.weight.exp_avg"));
}

TEST_CASE("which parameters decay", "[optimizer]") {
  CHECK(train::decays("model.layers.0.mlp.up_proj.weight", at::zeros({4, 4})));
  CHECK_FALSE(train::decays("model.norm.weight", at::zeros({4})));
  CHECK_FALSE(train::decays("model.layers.0.self_attn.q_proj.bias", at::zeros({4})));
  CHECK_FALSE(train::decays("model.layers.0.mlp.up_proj.weight_fq.scale", at::zeros({4, 2})));
}

TEST_CASE("gradient clipping scales to the max norm", "[optimizer]") {
  at::Tensor w = at::zeros({2, 2}).requires_grad_();
  w.mutable_grad() = at::full({2, 2}, 3.0);
  std::vector<train::NamedParam> ps{{"w", w}};
  CHECK(train::clip_grad_norm(ps, 1.0) == Approx(6.0));
  CHECK(train::grad_norm(ps) == Approx(1.0).epsilon(1e-5));
}

TEST_CASE("the foreach gradient norm and clipping equal a float64 loop over every element",
          "[optimizer]") {
  // Tensors of several sizes (one above libtorch's reduction block), one without a gradient.
  std::vector<train::NamedParam> ps;
  double sum_sq = 0;
  const std::vector<int64_t> sizes = {1, 7, 300, 70000};
  for (size_t i = 0; i < sizes.size(); ++i) {
    at::Tensor p = at::zeros({sizes[i]}).requires_grad_();
    p.mutable_grad() = qat::test::randn({sizes[i]}, static_cast<uint64_t>(10 + i)) * 3.0;
    const at::Tensor g = p.grad().to(at::kDouble);
    const double* d = g.data_ptr<double>();
    for (int64_t j = 0; j < g.numel(); ++j) sum_sq += d[j] * d[j];
    ps.push_back({"p" + std::to_string(i), p});
  }
  ps.push_back({"no_grad", at::zeros({5}).requires_grad_()});
  const double ref = std::sqrt(sum_sq);
  CHECK(train::grad_norm(ps) == Approx(ref).epsilon(1e-6));
  std::vector<at::Tensor> before;
  for (const auto& p : ps)
    before.push_back(p.param.grad().defined() ? p.param.grad().clone() : at::Tensor());
  CHECK(train::clip_grad_norm(ps, 2.0) == Approx(ref).epsilon(1e-6));
  const double coef = 2.0 / (ref + 1e-6);  // the clip coefficient, as torch computes it
  for (size_t i = 0; i < sizes.size(); ++i)
    CHECK(at::allclose(ps[i].param.grad(), before[i] * coef, 1e-6, 0));
  CHECK_FALSE(ps.back().param.grad().defined());
  CHECK(train::grad_norm(ps) == Approx(2.0).epsilon(1e-5));
  CHECK(train::clip_grad_norm(ps, 0.0) == Approx(2.0).epsilon(1e-5));  // 0: no clipping
}

TEST_CASE("learning-rate schedules", "[optimizer]") {
  train::LrSchedule s;
  s.lr = 1.0;
  s.warmup_steps = 4;
  s.total_steps = 14;
  s.min_lr_ratio = 0.1;
  CHECK(s.at(0) == Approx(0.25));
  CHECK(s.at(3) == Approx(1.0));
  CHECK(s.at(4) == Approx(1.0));
  CHECK(s.at(9) == Approx(0.1 + 0.45 * (1 + std::cos(M_PI * 0.5))));
  CHECK(s.at(14) == Approx(0.1));
  s.kind = train::Schedule::kLinear;
  CHECK(s.at(9) == Approx(0.55));
  s.kind = train::Schedule::kConstant;
  CHECK(s.at(13) == Approx(1.0));
  CHECK_THROWS_WITH(train::schedule_from_name("step"),
                    Catch::Contains("cosine, linear or constant"));
}
