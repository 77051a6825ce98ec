#include "qat/transforms/awq.h"

#include <ATen/ATen.h>
#include <torch/autograd.h>

#include <cmath>
#include <cstdio>
#include <limits>
#include <map>
#include <memory>

#include "qat/nn/module_walk.h"
#include "qat/transforms/layer_inputs.h"

namespace qat::transforms {

using fake_quant::ScaleMode;

void AwqConfig::validate() const {
  TORCH_CHECK(grid >= 1, "awq: grid must be >= 1 (alphas searched in [0, 1)), got ", grid);
  TORCH_CHECK(max_tokens >= 1, "awq: max_tokens must be >= 1, got ", max_tokens);
}

void check_awq_layer(const nn::FakeQuantLinear& layer, const std::string& name,
                     const std::string& method) {
  const fake_quant::FakeQuantizer fq = layer.weight_quantizer();
  TORCH_CHECK(fq && fq->active(), method, ": ", name,
              " has no active weight quantizer (quant.weight, and delay_steps 0): nothing to "
              "scale for");
  TORCH_CHECK(fq->config().scale_mode == ScaleMode::kDynamic, method, ": ", name, " has ",
              fake_quant::to_string(fq->config().scale_mode),
              " weight scales, which do not follow the scaled weight; ", method,
              " needs quant.scale_mode: dynamic (pass quant.scale_mode=dynamic)");
  TORCH_CHECK(method != "awq" || !layer.activation_quantizer(), "awq: ", name,
              " fake-quantizes its input, which AWQ's search does not model (the input is "
              "divided by the scales); AWQ is weight-only: turn quant.activation off");
  const fake_quant::FakeQuantizer aq = layer.activation_quantizer();
  TORCH_CHECK(!aq || aq->config().scale_mode == ScaleMode::kDynamic, method, ": ", name, " has a ",
              fake_quant::to_string(aq->config().scale_mode),
              " activation scale, which would not follow the smoothed input; calibrate it after "
              "smoothing (quant.activation with scale_mode dynamic while smoothing)");
  TORCH_CHECK(!layer.config().sparsity.enabled, method, ": ", name,
              " has 2:4 sparsity, which channel scaling does not take into account; turn "
              "sparsity off");
}

namespace {

// sum ||W X^T - Q(W diag(s)) A(X / s)^T||^2 over the group, in float64, A being the layer's
// activation fake quant (identity without one); `reference` holds W X^T.
double group_error(const std::vector<nn::FakeQuantLinear*>& group, const at::Tensor& x,
                   const std::vector<at::Tensor>& reference, const at::Tensor& s) {
  const at::Tensor xs = x / s;
  double err = 0;
  for (size_t m = 0; m < group.size(); ++m) {
    const at::Tensor q = group[m]->weight_quantizer()->forward(group[m]->weight() * s);
    fake_quant::FakeQuantizer aq = group[m]->activation_quantizer();
    const at::Tensor a = aq ? aq->forward(xs) : xs;
    err += (at::matmul(a, q.t()) - reference[m]).to(at::kDouble).pow(2).sum().item<double>();
  }
  return err;
}

}  // namespace

ScaledError scaled_output_error(const std::vector<nn::FakeQuantLinear*>& group, const at::Tensor& x,
                                const at::Tensor& s) {
  torch::NoGradGuard no_grad;
  const at::Tensor xf = x.reshape({-1, x.size(-1)}).to(at::kFloat);
  std::vector<at::Tensor> reference;
  double e0 = 0;
  for (auto* l : group) {
    reference.push_back(at::matmul(xf, l->weight().to(at::kFloat).t()));
    e0 += reference.back().to(at::kDouble).pow(2).sum().item<double>();
  }
  const at::Tensor one = at::ones_like(s);
  ScaledError e;
  e.unscaled = e0 > 0 ? group_error(group, xf, reference, one) / e0 : 0;
  e.scaled = e0 > 0 ? group_error(group, xf, reference, s) / e0 : 0;
  return e;
}

AwqSearch awq_search(const std::vector<nn::FakeQuantLinear*>& group, const at::Tensor& x,
                     const AwqConfig& cfg) {
  cfg.validate();
  TORCH_CHECK(!group.empty(), "awq_search: an empty group");
  torch::NoGradGuard no_grad;
  const at::Tensor xf = x.reshape({-1, x.size(-1)}).to(at::kFloat);
  std::vector<at::Tensor> reference;
  double e0 = 0;
  for (auto* l : group) {
    TORCH_CHECK(l->in_features() == xf.size(1), "awq_search: inputs of ", xf.size(1),
                " features for a linear of ", l->in_features());
    reference.push_back(at::matmul(xf, l->weight().to(at::kFloat).t()));
    e0 += reference.back().to(at::kDouble).pow(2).sum().item<double>();
  }
  const at::Tensor x_mean = xf.abs().mean(0);
  AwqSearch best;
  double best_err = std::numeric_limits<double>::infinity();
  for (int64_t i = 0; i < cfg.grid; ++i) {
    const double alpha = static_cast<double>(i) / static_cast<double>(cfg.grid);
    at::Tensor s = x_mean.pow(alpha).clamp_min(1e-4);
    s = s / (s.max() * s.min()).sqrt();
    const double err = group_error(group, xf, reference, s);
    if (i == 0) best.rtn_error = e0 > 0 ? err / e0 : 0;
    if (err < best_err) {
      best_err = err;
      best.alpha = alpha;
      best.scales = s;
    }
  }
  best.awq_error = e0 > 0 ? best_err / e0 : 0;
  return best;
}

void fold_scales_into_norm(const at::Tensor& norm_weight,
                           const std::vector<nn::FakeQuantLinear*>& group, const at::Tensor& s) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(norm_weight.numel() == s.numel(), "awq: a norm of ", norm_weight.numel(),
              " channels for ", s.numel(), " scales");
  norm_weight.div_(s.to(norm_weight.scalar_type()));
  for (auto* l : group) l->weight().mul_(s.to(l->weight().scalar_type()));
}

void fold_scales_into_linear(nn::LinearBase& previous,
                             const std::vector<nn::FakeQuantLinear*>& group, const at::Tensor& s) {
  torch::NoGradGuard no_grad;
  TORCH_CHECK(previous.out_features() == s.numel(), "awq: a linear of ", previous.out_features(),
              " outputs for ", s.numel(), " scales");
  at::Tensor w;
  if (auto* f = dynamic_cast<nn::FakeQuantLinear*>(&previous)) {
    w = f->weight();
  } else if (auto* d = dynamic_cast<nn::Linear*>(&previous)) {
    w = d->weight();
  }
  TORCH_CHECK(w.defined(), "awq: cannot fold scales into a ", previous.name(),
              " (a Linear or FakeQuantLinear)");
  w.div_(s.to(w.scalar_type()).unsqueeze(1));
  const at::Tensor b = previous.bias();
  if (b.defined()) b.div_(s.to(b.scalar_type()));
  for (auto* l : group) l->weight().mul_(s.to(l->weight().scalar_type()));
}

namespace {

// A group of one decoder layer: its linears (slot names) and what comes before them.
struct GroupSpec {
  std::vector<std::string> members;  // "self_attn.q_proj", ...
  std::string norm;                  // parameter name of the RMSNorm before them, or ""
  std::string previous;              // the linear before them, or ""
};

const std::vector<GroupSpec>& group_specs() {
  static const std::vector<GroupSpec> kGroups = {
      {{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}, "input_layernorm.weight", ""},
      {{"self_attn.o_proj"}, "", "self_attn.v_proj"},
      {{"mlp.gate_proj", "mlp.up_proj"}, "post_attention_layernorm.weight", ""},
      {{"mlp.down_proj"}, "", "mlp.up_proj"},
  };
  return kGroups;
}

std::map<std::string, std::shared_ptr<nn::LinearBase>> layer_linears(
    models::LlamaDecoderLayer& layer) {
  std::map<std::string, std::shared_ptr<nn::LinearBase>> out;
  nn::for_each_linear(layer,
                      [&](nn::ModuleWithLinears&, const std::string&, const std::string& full,
                          const std::shared_ptr<nn::LinearBase>& l) { out[full] = l; });
  return out;
}

// The group's fake-quant linears, or empty with `why` when one is missing or not fake-quantized.
std::vector<nn::FakeQuantLinear*> group_members(
    const GroupSpec& g, const std::map<std::string, std::shared_ptr<nn::LinearBase>>& linears,
    std::string* why) {
  std::vector<nn::FakeQuantLinear*> out;
  for (const auto& name : g.members) {
    const auto it = linears.find(name);
    auto* fq = it == linears.end() ? nullptr : dynamic_cast<nn::FakeQuantLinear*>(it->second.get());
    if (fq == nullptr || !fq->weight_quantizer()) {
      *why = name + " is not a fake-quantized linear";
      return {};
    }
    out.push_back(fq);
  }
  return out;
}

// The first member's inputs over the batches, padding dropped, at most max_tokens rows.
at::Tensor capture_inputs(models::LlamaDecoderLayer& layer, nn::FakeQuantLinear& first,
                          const std::vector<at::Tensor>& hidden,
                          const std::vector<models::ForwardContext>& ctx,
                          const std::vector<at::Tensor>& keep, int64_t max_tokens) {
  std::vector<at::Tensor> rows;
  int64_t n = 0;
  size_t current = 0;
  first.set_input_hook([&](const at::Tensor& x) {
    at::Tensor r = x.reshape({-1, x.size(-1)});
    if (keep[current].defined()) r = r.index({keep[current].reshape({-1})});
    r = r.slice(0, 0, std::max<int64_t>(0, max_tokens - n));
    n += r.size(0);
    rows.push_back(r.to(at::kFloat).clone());
    throw detail::StopForward{};
  });
  struct Unhook {  // also when the forward throws something else
    nn::FakeQuantLinear& l;
    ~Unhook() { l.set_input_hook({}); }
  } unhook{first};
  for (current = 0; current < hidden.size() && n < max_tokens; ++current) {
    try {
      layer.forward(hidden[current], ctx[current]);
    } catch (const detail::StopForward&) {
    }
  }
  return at::cat(rows);
}

std::string group_name(const std::string& prefix, const GroupSpec& g) {
  std::string name = prefix + g.members.front();
  for (size_t i = 1; i < g.members.size(); ++i)
    name += "+" + g.members[i].substr(g.members[i].rfind('.') + 1);
  return name;
}

}  // namespace

void check_awq_model(models::LlamaForCausalLM& model) {
  check_scaling_model(model, "awq");
}

void check_scaling_model(models::LlamaForCausalLM& model, const std::string& method) {
  models::LlamaModel& m = model.model();
  size_t total = 0;
  for (int64_t l = 0; l < m.num_layers(); ++l) {
    nn::for_each_linear(
        *m.layer(l), [&](nn::ModuleWithLinears&, const std::string&, const std::string& name,
                         const std::shared_ptr<nn::LinearBase>& layer) {
          auto* fq = dynamic_cast<nn::FakeQuantLinear*>(layer.get());
          if (fq == nullptr || !fq->weight_quantizer()) return;
          check_awq_layer(*fq, "model.layers." + std::to_string(l) + "." + name, method);
          ++total;
        });
  }
  TORCH_CHECK(total > 0, method, ": the model has no fake-quantized linear layers in its decoder ",
              "layers (prepare() it with a weight format first)");
}

namespace {

// One group of one decoder layer: capture, search, fold (or the reason it is left alone).
AwqGroupReport scale_group(models::LlamaDecoderLayer& layer, const std::string& prefix,
                           const std::map<std::string, std::shared_ptr<nn::LinearBase>>& linears,
                           const GroupSpec& g, const std::vector<at::Tensor>& hidden,
                           const std::vector<models::ForwardContext>& ctx,
                           const std::vector<at::Tensor>& keep, int64_t max_tokens,
                           const ScaleRule& rule, const std::string& method) {
  AwqGroupReport r;
  r.name = group_name(prefix, g);
  const std::vector<nn::FakeQuantLinear*> members = group_members(g, linears, &r.skipped);
  if (members.empty()) return r;
  std::shared_ptr<nn::LinearBase> previous;
  if (!g.previous.empty()) {
    previous = linears.at(g.previous);
    if (previous->out_features() != members.front()->in_features()) {
      r.skipped = g.previous + " has " + std::to_string(previous->out_features()) +
                  " outputs for " + std::to_string(members.front()->in_features()) +
                  " inputs (grouped-query attention): no place to fold the scales";
      return r;
    }
  }
  const at::Tensor x = capture_inputs(layer, *members.front(), hidden, ctx, keep, max_tokens);
  TORCH_CHECK(x.size(0) > 0, method, ": ", r.name, " saw no calibration tokens (all padding?)");
  const AwqSearch s = rule(members, x);
  r.rows = x.size(0);
  r.alpha = s.alpha;
  r.rtn_error = s.rtn_error;
  r.awq_error = s.awq_error;
  if (previous) {
    fold_scales_into_linear(*previous, members, s.scales);
  } else {
    fold_scales_into_norm(layer.named_parameters()[g.norm], members, s.scales);
  }
  return r;
}

}  // namespace

std::vector<AwqGroupReport> awq_llama(models::LlamaForCausalLM& model,
                                      const std::vector<CalibrationBatch>& batches,
                                      const AwqConfig& cfg,
                                      const std::function<void(const std::string&)>& log) {
  cfg.validate();
  const ScaleRule rule = [&cfg](const std::vector<nn::FakeQuantLinear*>& group,
                                const at::Tensor& x) { return awq_search(group, x, cfg); };
  return scale_llama(model, batches, cfg.max_tokens, rule, "awq", log);
}

std::vector<AwqGroupReport> scale_llama(models::LlamaForCausalLM& model,
                                        const std::vector<CalibrationBatch>& batches,
                                        int64_t max_tokens, const ScaleRule& rule,
                                        const std::string& method,
                                        const std::function<void(const std::string&)>& log) {
  TORCH_CHECK(!batches.empty(), method, ": no calibration batches");
  check_scaling_model(model, method);
  torch::NoGradGuard no_grad;
  detail::ModeGuard mode{model, model.is_training()};
  model.eval();
  models::LlamaModel& m = model.model();
  detail::LayerInputs in = detail::first_layer_inputs(m, batches);
  const std::vector<models::ForwardContext>& ctx = in.ctx;
  std::vector<at::Tensor>& hidden = in.hidden;
  const std::vector<at::Tensor>& keep = in.keep;
  std::vector<AwqGroupReport> reports;
  for (int64_t l = 0; l < m.num_layers(); ++l) {
    auto layer = m.layer(l);
    const std::string prefix = "model.layers." + std::to_string(l) + ".";
    const auto linears = layer_linears(*layer);  // the slots: folding changes weights only
    double rtn = 0, awq = 0;
    int scaled = 0;
    for (const GroupSpec& g : group_specs()) {
      reports.push_back(
          scale_group(*layer, prefix, linears, g, hidden, ctx, keep, max_tokens, rule, method));
      if (!reports.back().skipped.empty()) continue;
      rtn += reports.back().rtn_error;
      awq += reports.back().awq_error;
      ++scaled;
    }
    if (l + 1 < m.num_layers()) {
      for (size_t b = 0; b < batches.size(); ++b) hidden[b] = layer->forward(hidden[b], ctx[b]);
    }
    if (log && scaled > 0) {
      char line[160];
      std::snprintf(line, sizeof(line),
                    "%s: layer %lld/%lld: %d groups scaled, mean relative output error %.5f "
                    "(%s %.5f)",
                    method.c_str(), static_cast<long long>(l + 1),
                    static_cast<long long>(m.num_layers()), scaled, awq / scaled,
                    method == "awq" ? "round to nearest" : "unscaled", rtn / scaled);
      log(line);
    }
  }
  return reports;
}

}  // namespace qat::transforms
