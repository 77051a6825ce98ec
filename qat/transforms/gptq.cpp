#include "qat/transforms/gptq.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/nn/modules/embedding.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <utility>

#include "ops/element_fake_quant.h"
#include "qat/nn/module_walk.h"
#include "qat/transforms/layer_inputs.h"

namespace qat::transforms {

using fake_quant::FakeQuantizerImpl;
using fake_quant::ScaleMode;
using scheme::Granularity;
using scheme::QuantSpec;

void GptqConfig::validate() const {
  TORCH_CHECK(std::isfinite(damp) && damp >= 0 && damp <= 1,
              "gptq: damp must be in [0, 1] (a fraction of ",
              "the Hessian's mean diagonal; 0.01 is usual), got ", damp);
  TORCH_CHECK(block_size >= 1, "gptq: block_size must be >= 1, got ", block_size);
}

HessianAccumulator::HessianAccumulator(int64_t in_features) : in_features_(in_features) {
  TORCH_CHECK(in_features > 0, "HessianAccumulator: in_features must be > 0, got ", in_features);
}

void HessianAccumulator::add(const at::Tensor& x, const at::Tensor& keep) {
  TORCH_CHECK(x.dim() >= 1 && x.size(-1) == in_features_,
              "HessianAccumulator: expected inputs (..., ", in_features_, "), got ", x.sizes());
  at::Tensor rows = x.detach().reshape({-1, in_features_});
  if (keep.defined()) {
    TORCH_CHECK(keep.numel() == rows.size(0), "HessianAccumulator: keep has ", keep.numel(),
                " elements for ", rows.size(0), " rows");
    rows = rows.index({keep.reshape({-1}).to(rows.device(), at::kBool)});
  }
  rows = rows.to(at::kFloat);
  if (!sum_.defined()) sum_ = at::zeros({in_features_, in_features_}, rows.options());
  sum_.addmm_(rows.t(), rows);
  rows_ += rows.size(0);
}

at::Tensor HessianAccumulator::hessian() const {
  if (rows_ == 0) return at::zeros({in_features_, in_features_}, at::kFloat);
  return sum_ * (2.0 / static_cast<double>(rows_));
}

void check_gptq_layer(const nn::FakeQuantLinear& layer, const std::string& name) {
  const fake_quant::FakeQuantizer fq = layer.weight_quantizer();
  TORCH_CHECK(fq && fq->active(), "gptq: ", name,
              " has no active weight quantizer (quant.weight, and ",
              "delay_steps 0): nothing to round");
  const auto& c = fq->config();
  TORCH_CHECK(!scheme::is_kquant(c.spec.format) || c.scale_mode == ScaleMode::kLearnable,
              "gptq: ", name, " is quantized as ", c.spec.to_string(),
              ": a k-quant super-block's scales come from a search over all of its values, so GPTQ "
              "cannot move one element without changing them; with quant.scale_mode: learnable "
              "the scales are the layer's own (they start from ggml's search) and GPTQ rounds "
              "against them");
  // Learned ggml block scales are parameters of their own: GPTQ rounds against them as they
  // stand (fixed for the run), the way it rounds against a static observer's scales.
  TORCH_CHECK(
      c.scale_mode != ScaleMode::kLearnable || fake_quant::learns_block_scales(c.spec.format),
      "gptq: ", name, " has learnable (LSQ) scales, which ",
      "move with the weight; use quant.scale_mode dynamic or static for GPTQ (learned ",
      "scales of ggml's block formats, gguf_q4_0 etc., work too)");
  TORCH_CHECK(
      c.scale_mode == ScaleMode::kStatic || c.range.method == fake_quant::RangeMethod::kMinMax,
      "gptq: ", name, " sets its weight scales by a clipping search (range ",
      fake_quant::to_string(c.range.method), ") over all of the weight's values, which GPTQ's ",
      "updates would change; use the min-max range (quant.range: minmax)");
  TORCH_CHECK(!layer.config().sparsity.enabled, "gptq: ", name,
              " has 2:4 sparsity, which GPTQ does ",
              "not take into account; turn sparsity off for GPTQ");
}

namespace {

// How each element of a weight is rounded: the layer's fake quantization with the parameters its
// quantizer gives the original weight (fixed for the whole run) and, for min-max scales, the
// bounds that keep those parameters (see the top of gptq.h). Everything on the CPU, (out, in).
// The rounder of a layer: its fake quant with fixed parameters, one group per scale (k-quants:
// per sub-block, against the learned scales as the blocks store them).
ops::ElementFakeQuant layer_rounder(const FakeQuantizerImpl& fq, const at::Tensor& weight) {
  const QuantSpec& spec = fq.config().spec;
  if (!scheme::is_kquant(spec.format))
    return ops::ElementFakeQuant(spec, fq.qparams_for(weight.detach()), weight.scalar_type());
  const ops::KQuantParams p = fake_quant::kquant_stored_params(fq.kquant_learned(), spec);
  const int64_t j = ops::kquant_sub_blocks(spec.format);
  const at::Tensor dj = p.d.repeat_interleave(j, -1) * p.scales;  // as the blocks compute them
  const at::Tensor dm = p.dmin.defined() ? p.dmin.repeat_interleave(j, -1) * p.mins : at::Tensor();
  return ops::ElementFakeQuant::kquant(spec.format, dj, dm, weight.scalar_type());
}

struct RoundingPlan {
  RoundingPlan(const FakeQuantizerImpl& fq, const at::Tensor& weight)
      : rounder(layer_rounder(fq, weight)) {
    const at::Tensor w = weight.detach().to(at::kCPU).contiguous();
    const QuantSpec& spec = fq.config().spec;
    if (scheme::is_kquant(spec.format)) {  // one group per sub-block, in row-major order
      const int64_t sub = 256 / ops::kquant_sub_blocks(spec.format);
      group = at::arange(w.numel(), at::kLong).div(sub, "floor").view(w.sizes());
      TORCH_CHECK(rounder.groups() == w.numel() / sub, "gptq: internal error: ", rounder.groups(),
                  " k-quant sub-blocks for ", w.numel() / sub);
      return;
    }
    // Element (i, j) of the contiguous weight uses group (flat / inner) % count.
    const scheme::GroupLayout l = spec.layout(w.sizes());
    const at::Tensor flat = at::arange(w.numel(), at::kLong);
    group = flat.div(l.inner, "floor").remainder(l.count).view(w.sizes());
    TORCH_CHECK(rounder.groups() == l.count, "gptq: internal error: ", rounder.groups(),
                " qparams for ", l.count, " groups");
    keep_range = fq.config().scale_mode == ScaleMode::kDynamic;
    if (!keep_range) return;
    // What a group's parameters depend on, and so which elements keep their values (the anchors)
    // and the open interval every other element is clamped into (one step of the weight's dtype
    // in from its ends):
    //   int, fp8, nf4, Q8_0, Q4_0, Q5_0: max|x| (ggml: the first element of largest |x|, sign kept)
    //       -> that first element; (-max|x|, max|x|)
    //   uint: [min(x, 0), max(x, 0)] -> the first min (if < 0) and the first max (if > 0); that
    //   range Q4_1, Q5_1: [min, max] -> the first min and the first max; (min, max)
    const at::ScalarType dtype = w.scalar_type();
    const at::Tensor wf = w.to(at::kFloat).reshape({-1});
    const at::Tensor g = group.reshape({-1});
    auto per_group = [&](const at::Tensor& v, const char* how, float init) {
      return at::full({l.count}, init).scatter_reduce(0, g, v, how).index_select(0, g);
    };
    auto first_where =
        [&](const at::Tensor& mask) {  // the first element of its group where mask holds
          const at::Tensor cand = at::where(mask, flat, at::scalar_tensor(w.numel(), at::kLong));
          const at::Tensor first =
              at::full({l.count}, w.numel(), at::kLong).scatter_reduce(0, g, cand, "amin");
          return mask & flat.eq(first.index_select(0, g));
        };
    const at::Tensor mn = per_group(wf, "amin", INFINITY), mx = per_group(wf, "amax", -INFINITY);
    at::Tensor lo, hi, kept;
    const scheme::Format f = spec.format;
    if (f == scheme::Format::kQ4_1 || f == scheme::Format::kQ5_1) {
      lo = mn;
      hi = mx;
      kept = first_where(wf.eq(mn)) | first_where(wf.eq(mx));
    } else if (f == scheme::Format::kUInt) {
      lo = at::clamp_max(mn, 0.0);
      hi = at::clamp_min(mx, 0.0);
      kept = first_where(wf.eq(mn) & mn.lt(0)) | first_where(wf.eq(mx) & mx.gt(0));
    } else {
      const at::Tensor amax = per_group(wf.abs(), "amax", 0.0f);
      lo = -amax;
      hi = amax;
      kept = first_where(wf.abs().eq(amax));
    }
    const at::Tensor lo_in = at::nextafter(lo.to(dtype), hi.to(dtype)).to(at::kFloat);
    const at::Tensor hi_in = at::nextafter(hi.to(dtype), lo.to(dtype)).to(at::kFloat);
    // A group whose range is at most one step wide has no inside: it keeps all of its values.
    const at::Tensor no_inside = lo_in.gt(hi_in) | lo.eq(hi);
    anchor = (kept | no_inside).view(w.sizes()).contiguous();
    original = wf.view(w.sizes()).clone();  // w may be the parameter itself, which GPTQ overwrites
    low = lo_in.view(w.sizes()).contiguous();
    high = hi_in.view(w.sizes()).contiguous();
  }

  ops::ElementFakeQuant rounder;
  at::Tensor group;  // int64: each element's group
  bool keep_range = false;
  at::Tensor anchor, original, low,
      high;  // bool, float32 x 3: kept elements, their values, bounds of the rest
};

// Rounds the columns column[b0 .. b0 + width) of the weight (row-major, `k` columns), the block
// `wb` (rows, width, its current values, updated in place), with `ub` the block's part of U. Writes
// what the weight stores, what the layer computes with, and each column's scaled error. Rows are
// independent inside a block, so they run in parallel.
void round_block(const RoundingPlan& plan, const int64_t* column, int64_t b0, int64_t k, float* wb,
                 int64_t rows, int64_t width, const float* ub, float* stored, float* deployed,
                 float* errors) {
  const int64_t* group = plan.group.data_ptr<int64_t>();
  const bool* anchor = plan.keep_range ? plan.anchor.data_ptr<bool>() : nullptr;
  const float* original = plan.keep_range ? plan.original.data_ptr<float>() : nullptr;
  const float* low = plan.keep_range ? plan.low.data_ptr<float>() : nullptr;
  const float* high = plan.keep_range ? plan.high.data_ptr<float>() : nullptr;
  at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      float* row = wb + r * width;
      for (int64_t i = 0; i < width; ++i) {
        const int64_t at_w = r * k + column[b0 + i];  // the element in the whole weight
        const float v = row[i];
        float target = v;
        if (anchor != nullptr)
          target = anchor[at_w] ? original[at_w] : std::min(std::max(v, low[at_w]), high[at_w]);
        const float s = plan.rounder.to_dtype(target);
        const float q = plan.rounder(s, group[at_w]);
        stored[at_w] = s;
        deployed[at_w] = q;
        const float* u = ub + i * width;
        const float e = (v - q) / u[i];
        for (int64_t c = i + 1; c < width; ++c) row[c] -= e * u[c];
        errors[r * width + i] = e;
      }
    }
  });
}

// U with H^-1 = U^T U for the damped H, in float64 on the CPU (k^3 work: seconds for k = 14336).
std::pair<at::Tensor, double> inverse_cholesky(at::Tensor h, double damp, const std::string& name) {
  h = h.to(at::kDouble);
  // Inputs that never occur (zero diagonal: the whole row and column are zero) get H_jj = 1:
  // their columns round to nearest and pass no error on.
  const at::Tensor dead = h.diagonal() == 0;
  h.diagonal().masked_fill_(dead, 1.0);
  const double mean_diag = h.diagonal().mean().item<double>();
  const at::Tensor eye = at::eye(h.size(0), h.options());
  double tried = damp;
  for (int attempt = 0; attempt<5; ++attempt, damp = damp> 0 ? damp * 10 : 1e-4) {
    tried = damp;
    auto [l, info] = at::linalg_cholesky_ex(h + eye * (damp * mean_diag));
    if (info.item<int64_t>() != 0) continue;
    auto [u, info_u] = at::linalg_cholesky_ex(at::cholesky_inverse(l), /*upper=*/true);
    if (info_u.item<int64_t>() == 0) return {u, damp};
  }
  TORCH_CHECK(false, "gptq: ", name,
              ": the Hessian of the calibration inputs is not positive definite ",
              "even with damp ", tried, "; check the calibration data (empty or constant inputs?)");
}

// E(D) = tr(D H D^T) / 2 for each of the weight-shaped differences `d` (one matmul).
std::vector<double> output_errors(const std::vector<at::Tensor>& d, const at::Tensor& h) {
  const at::Tensor all = at::cat(d);
  const at::Tensor e =
      (all.matmul(h) * all).view({static_cast<int64_t>(d.size()), -1}).sum(1).to(at::kDouble) * 0.5;
  std::vector<double> out(d.size());
  for (size_t i = 0; i < d.size(); ++i) out[i] = e[static_cast<int64_t>(i)].item<double>();
  return out;
}

// What GPTQ needs from a Hessian, computed once for all the layers that share it (q/k/v see the
// same inputs): H itself (float32, checked), the rounding order, U for that order, the damping.
struct PreparedHessian {
  at::Tensor h, order, u;
  double damp = 0;
};

PreparedHessian prepare_hessian(const at::Tensor& hessian, const GptqConfig& cfg,
                                const std::string& name) {
  PreparedHessian p;
  p.h = hessian.to(at::kFloat);
  TORCH_CHECK(p.h.dim() == 2 && p.h.size(0) == p.h.size(1), "gptq: ", name,
              ": the Hessian must be square, got ", p.h.sizes());
  TORCH_CHECK(at::isfinite(p.h).all().item<bool>(), "gptq: ", name,
              ": the Hessian holds NaN or Inf ", "(calibration activations overflowed?)");
  const int64_t k = p.h.size(0);
  // Columns in the order they are rounded: by decreasing H_jj with act_order (the inputs with
  // most energy first, while the most columns are left to take their errors), else as stored.
  const at::Tensor h_cpu = p.h.cpu();
  p.order =
      cfg.act_order
          ? std::get<1>(at::sort(h_cpu.diagonal(), /*stable=*/true, /*dim=*/0, /*descending=*/true))
          : at::arange(k, at::kLong);
  auto [u64, damp] =
      inverse_cholesky(h_cpu.index_select(0, p.order).index_select(1, p.order), cfg.damp, name);
  p.u = u64.to(at::kFloat);
  p.damp = damp;
  return p;
}

// Rounds one layer that its callers validated (cfg.validate(), check_gptq_layer(): gptq_layer()
// for one layer, gptq_targets() for a whole model before any work).
GptqLayerReport round_layer(nn::FakeQuantLinear& layer, const PreparedHessian& ph,
                            const GptqConfig& cfg, const std::string& name) {
  const fake_quant::FakeQuantizer fq = layer.weight_quantizer();
  TORCH_CHECK(fq->config().scale_mode != ScaleMode::kStatic ||
                  (fq->observer() && fq->observer()->has_range()),
              "gptq: ", name, " has static weight scales that were never calibrated");
  torch::NoGradGuard no_grad;
  const at::Tensor param = layer.weight();
  const int64_t n = param.size(0), k = param.size(1);
  TORCH_CHECK(ph.h.size(0) == k, "gptq: ", name, ": the Hessian must be (", k, ", ", k,
              ") for in_features ", k, ", got ", ph.h.sizes());
  const at::Tensor w0 = param.detach().to(at::kFloat).clone();  // a copy: param changes below
  TORCH_CHECK(at::isfinite(w0).all().item<bool>(), "gptq: ", name, ": the weight holds NaN or Inf");
  const at::Tensor rtn = layer.effective_weight().to(at::kFloat);

  // The rounding runs on the CPU (one column after another is latency-bound work); the layer's
  // tensors may live anywhere.
  const RoundingPlan plan(*fq, param);
  const at::Tensor& order = ph.order;
  const at::Tensor& u = ph.u;
  at::Tensor w = w0.cpu().index_select(1, order);  // columns in rounding order
  at::Tensor stored = at::empty({n, k}, at::kFloat), deployed = at::empty({n, k}, at::kFloat);
  for (int64_t b0 = 0; b0 < k; b0 += cfg.block_size) {
    const int64_t b1 = std::min(k, b0 + cfg.block_size);
    at::Tensor wb = w.slice(1, b0, b1).contiguous();
    const at::Tensor ub = u.slice(0, b0, b1).slice(1, b0, b1).contiguous();
    at::Tensor errors = at::empty({n, b1 - b0}, at::kFloat);
    round_block(plan, order.data_ptr<int64_t>(), b0, k, wb.data_ptr<float>(), n, b1 - b0,
                ub.data_ptr<float>(), stored.data_ptr<float>(), deployed.data_ptr<float>(),
                errors.data_ptr<float>());
    TORCH_CHECK(at::isfinite(errors).all().item<bool>(), "gptq: ", name,
                ": the error updates overflowed ", "(an ill-conditioned Hessian; damp ", ph.damp,
                "): try a larger damp (--gptq-damp)");
    // The rest of the weight takes the block's errors at once (the lazy batch update).
    if (b1 < k) w.slice(1, b1).sub_(at::matmul(errors, u.slice(0, b0, b1).slice(1, b1)));
  }
  deployed = deployed.to(w0.device());
  param.copy_(stored.to(param.scalar_type()));

  // The contract: the layer now computes with exactly what GPTQ rounded to.
  const at::Tensor now = layer.effective_weight().to(at::kFloat);
  if (!at::equal(now, deployed)) {
    param.copy_(w0.to(param.scalar_type()));
    TORCH_CHECK(false, "gptq: internal error: ", name,
                "'s fake-quantized weight differs from GPTQ's ", "rounding in ",
                now.ne(deployed).sum().item<int64_t>(),
                " elements; this layer was restored (layers ", "rounded before it stay rounded)");
  }
  GptqLayerReport report;
  report.name = name;
  report.damp = ph.damp;
  const auto e = output_errors({w0, w0 - rtn, w0 - deployed}, ph.h.to(w0.device()));
  report.rtn_error = e[0] > 0 ? e[1] / e[0] : 0.0;
  report.gptq_error = e[0] > 0 ? e[2] / e[0] : 0.0;
  return report;
}

}  // namespace

GptqLayerReport gptq_layer(nn::FakeQuantLinear& layer, const at::Tensor& hessian,
                           const GptqConfig& cfg, const std::string& name) {
  cfg.validate();
  check_gptq_layer(layer, name);
  const int64_t k = layer.in_features();
  TORCH_CHECK(hessian.dim() == 2 && hessian.size(0) == k && hessian.size(1) == k, "gptq: ", name,
              ": the Hessian must be (", k, ", ", k, ") for in_features ", k, ", got ",
              hessian.sizes());
  return round_layer(layer, prepare_hessian(hessian, cfg, name), cfg, name);
}

namespace {

struct Target {
  std::string name;
  nn::FakeQuantLinear* layer = nullptr;
};

// Removes the input hooks it set, also when GPTQ throws.
struct HookGuard {
  std::vector<Target>* targets;
  ~HookGuard() {
    for (auto& t : *targets) t.layer->set_input_hook({});
  }
};

// The linears GPTQ rounds: the FakeQuantLinears with a weight quantizer in each decoder layer,
// checked (the rest -- lm_head, embeddings, dense layers -- is left alone).
std::vector<std::vector<Target>> gptq_targets(models::LlamaForCausalLM& model) {
  models::LlamaModel& m = model.model();
  std::vector<std::vector<Target>> targets(static_cast<size_t>(m.num_layers()));
  size_t total = 0;
  for (int64_t l = 0; l < m.num_layers(); ++l) {
    const std::string prefix = "model.layers." + std::to_string(l) + ".";
    nn::for_each_linear(*m.layer(l),
                        [&](nn::ModuleWithLinears&, const std::string&, const std::string& full,
                            const std::shared_ptr<nn::LinearBase>& layer) {
                          auto* fq = dynamic_cast<nn::FakeQuantLinear*>(layer.get());
                          if (fq == nullptr || !fq->weight_quantizer()) return;
                          check_gptq_layer(*fq, prefix + full);
                          targets[static_cast<size_t>(l)].push_back({prefix + full, fq});
                          ++total;
                        });
  }
  TORCH_CHECK(total > 0,
              "gptq: the model has no fake-quantized linear layers in its decoder layers ",
              "(prepare() it with a weight format first)");
  return targets;
}

}  // namespace

void check_gptq_model(models::LlamaForCausalLM& model) {
  (void)gptq_targets(model);
}

std::vector<GptqLayerReport> gptq_llama(models::LlamaForCausalLM& model,
                                        const std::vector<CalibrationBatch>& batches,
                                        const GptqConfig& cfg,
                                        const std::function<void(const std::string&)>& log) {
  cfg.validate();
  TORCH_CHECK(!batches.empty(), "gptq: no calibration batches");
  models::LlamaModel& m = model.model();
  const int64_t num_layers = m.num_layers();

  // Every target is checked before any work, so a config GPTQ cannot take fails at once.
  std::vector<std::vector<Target>> targets = gptq_targets(model);

  torch::NoGradGuard no_grad;
  detail::ModeGuard mode{model, model.is_training()};
  model.eval();
  detail::LayerInputs in = detail::first_layer_inputs(m, batches);
  const std::vector<models::ForwardContext>& ctx = in.ctx;
  std::vector<at::Tensor>& hidden = in.hidden;
  const std::vector<at::Tensor>& keep = in.keep;

  std::vector<GptqLayerReport> reports;
  for (int64_t l = 0; l < num_layers; ++l) {
    auto layer = m.layer(l);
    std::vector<Target>& todo = targets[static_cast<size_t>(l)];
    HookGuard hooks{&todo};

    // Probe with one batch: the order in which the linears are called, and their inputs, give
    // the groups that share an input (compared by value: input fake quant makes new tensors).
    std::vector<at::Tensor> probe(todo.size());
    std::vector<size_t> order;
    for (size_t t = 0; t < todo.size(); ++t) {
      todo[t].layer->set_input_hook([&, t](const at::Tensor& x) {
        if (probe[t].defined()) return;
        probe[t] = x.detach().clone();
        order.push_back(t);
      });
    }
    if (!todo.empty()) layer->forward(hidden[0], ctx[0]);
    for (size_t t = 0; t < todo.size(); ++t) {
      TORCH_CHECK(probe[t].defined(), "gptq: ", todo[t].name,
                  " was not called by its decoder layer's forward");
    }
    std::vector<std::vector<size_t>> groups;
    for (size_t t : order) {
      if (!groups.empty() && probe[groups.back().front()].sizes() == probe[t].sizes() &&
          at::equal(probe[groups.back().front()], probe[t])) {
        groups.back().push_back(t);
      } else {
        groups.push_back({t});
      }
    }
    probe.clear();

    // Each group: its Hessians from every batch (the groups before it already rounded), then GPTQ.
    double rtn = 0, gptq = 0;
    for (const auto& group : groups) {
      // The members of a group see the same inputs: one Hessian (taken from the first member).
      HessianAccumulator acc(todo[group.front()].layer->in_features());
      // Once every member has its input, the rest of the layer's forward is not needed: the hook
      // stops it by throwing (as the reference implementations' input catchers do).
      size_t current = 0;
      std::vector<bool> seen(group.size());
      size_t seen_count = 0;
      for (auto& t : todo) t.layer->set_input_hook({});
      for (size_t a = 0; a < group.size(); ++a) {
        todo[group[a]].layer->set_input_hook([&, a](const at::Tensor& x) {
          if (a == 0) acc.add(x, keep[current]);
          if (!seen[a]) {
            seen[a] = true;
            if (++seen_count == group.size()) throw detail::StopForward{};
          }
        });
      }
      for (current = 0; current < batches.size(); ++current) {
        std::fill(seen.begin(), seen.end(), false);
        seen_count = 0;
        try {
          layer->forward(hidden[current], ctx[current]);
        } catch (const detail::StopForward&) {
        }
      }
      for (size_t t : group) todo[t].layer->set_input_hook({});
      TORCH_CHECK(acc.rows() > 0, "gptq: ", todo[group.front()].name,
                  " saw no calibration tokens (all padding?)");
      const PreparedHessian ph = prepare_hessian(acc.hessian(), cfg, todo[group.front()].name);
      for (size_t t : group) {
        GptqLayerReport r = round_layer(*todo[t].layer, ph, cfg, todo[t].name);
        r.rows = acc.rows();
        rtn += r.rtn_error;
        gptq += r.gptq_error;
        reports.push_back(std::move(r));
      }
    }
    if (l + 1 < num_layers) {  // the next layer's inputs, through this one rounded
      for (size_t b = 0; b < batches.size(); ++b) hidden[b] = layer->forward(hidden[b], ctx[b]);
    }
    if (log && !todo.empty()) {
      char line[160];
      std::snprintf(line, sizeof(line),
                    "gptq: layer %lld/%lld: %zu linears, mean relative output error %.5f (round to "
                    "nearest %.5f)",
                    static_cast<long long>(l + 1), static_cast<long long>(num_layers), todo.size(),
                    gptq / static_cast<double>(todo.size()),
                    rtn / static_cast<double>(todo.size()));
      log(line);
    }
  }
  return reports;
}

namespace detail {

LayerInputs first_layer_inputs(models::LlamaModel& m,
                               const std::vector<CalibrationBatch>& batches) {
  const at::Device device = m.embed_tokens()->weight.device();
  LayerInputs in;
  for (const auto& b : batches) {
    const at::Tensor tokens = b.tokens.to(device);
    in.ctx.push_back(m.context(tokens, nullptr, std::nullopt, b.packed ? &*b.packed : nullptr));
    in.hidden.push_back(m.embed_tokens()->forward(tokens));
    in.keep.push_back(b.packed ? b.packed->segments.to(device).ge(0) : at::Tensor());
  }
  return in;
}

}  // namespace detail

}  // namespace qat::transforms
