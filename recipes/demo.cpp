#include "recipes/demo.h"

#include <ATen/ATen.h>
#include <torch/optim/adamw.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iomanip>

#include "qat/nn/quantized_linear.h"
#include "qat/transforms/prepare.h"

namespace qat::recipes {

namespace {

using scheme::Granularity;
using scheme::QuantSpec;

// A two-layer SwiGLU-free MLP with HF-like names: x -> up_proj -> silu -> down_proj.
struct Mlp : nn::ModuleWithLinears {
  std::shared_ptr<nn::LinearBase> up_proj, down_proj;
  Mlp(int64_t d, int64_t h) {
    up_proj = std::make_shared<nn::Linear>(d, h, true);
    down_proj = std::make_shared<nn::Linear>(h, d, true);
    register_linear("up_proj", up_proj);
    register_linear("down_proj", down_proj);
  }
  at::Tensor forward(const at::Tensor& x) { return down_proj->forward(at::silu(up_proj->forward(x))); }
};

void copy_weights(Mlp& dst, Mlp& src) {
  torch::NoGradGuard g;
  auto sp = src.named_parameters();
  for (auto& p : dst.named_parameters()) p.value().copy_(sp[p.key()]);
}

double mse(Mlp& m, const at::Tensor& x, const at::Tensor& y) {
  torch::NoGradGuard g;
  m.eval();
  return (m.forward(x) - y).square().mean().item<double>();
}

}  // namespace

void print_formats(std::ostream& out) {
  out << std::left << std::setw(12) << "format" << std::setw(8) << "bits" << std::setw(14) << "mapping"
      << std::setw(8) << "block" << std::setw(10) << "scales" << "learnable\n";
  const char* mappings[] = {"symmetric", "asymmetric", "absmax", "ggml block"};
  for (int f = 0; f < scheme::kNumFormats; ++f) {
    const auto& t = scheme::kFormatTraits[f];
    const std::string bits = t.min_bits == t.max_bits ? std::to_string(t.min_bits)
                                                      : std::to_string(t.min_bits) + ".." + std::to_string(t.max_bits);
    out << std::setw(12) << std::string(t.name) << std::setw(8) << bits << std::setw(14)
        << mappings[static_cast<int>(t.mapping)] << std::setw(8)
        << (t.fixed_block ? std::to_string(t.fixed_block) : std::string("any")) << std::setw(10)
        << scheme::to_string(t.scale_dtype) << (t.learnable_ok ? "lsq" : "-") << "\n";
  }
}

int run_demo(const DemoOptions& opts, std::ostream& out) {
  const auto t0 = std::chrono::steady_clock::now();
  torch::manual_seed(opts.seed);
  constexpr int64_t kDim = 64, kHidden = 256, kTrain = 8192, kTest = 2048;
  // The teacher is a float MLP; the student starts as its exact copy, so the float student's
  // loss is 0 and every bit of error below comes from quantization.
  Mlp teacher(kDim, kHidden);
  const at::Tensor x_train = at::randn({kTrain, kDim}), x_test = at::randn({kTest, kDim});
  at::Tensor y_train, y_test;
  {
    torch::NoGradGuard g;
    y_train = teacher.forward(x_train);
    y_test = teacher.forward(x_test);
  }

  QuantSpec spec = QuantSpec::from_name(opts.weight_format);
  if (spec.traits().fixed_block == 0 && spec.format != scheme::Format::kNf4)
    spec.granularity = Granularity::per_group(opts.group_size);
  transforms::PrepareConfig cfg;
  fake_quant::FakeQuantizerConfig w;
  w.spec = spec;
  cfg.layer.weight = w;
  fake_quant::FakeQuantizerConfig a;
  a.spec = QuantSpec::from_name("int8").with(Granularity::per_token());
  cfg.layer.activation = a;

  // PTQ: round-to-nearest with the same format, no training.
  Mlp ptq(kDim, kHidden);
  copy_weights(ptq, teacher);
  transforms::prepare(ptq, cfg);
  const double ptq_loss = mse(ptq, x_test, y_test);

  // QAT: the same prepared model, fine-tuned through the fake quantizers.
  Mlp qat_model(kDim, kHidden);
  copy_weights(qat_model, teacher);
  transforms::prepare(qat_model, cfg);
  torch::optim::AdamW opt(qat_model.parameters(), torch::optim::AdamWOptions(3e-5).weight_decay(0.0));
  std::ofstream metrics;
  if (!opts.metrics_path.empty()) metrics.open(opts.metrics_path);
  constexpr int64_t kBatch = 256;
  for (int step = 0; step < opts.steps; ++step) {
    qat_model.train();
    const int64_t off = (step * kBatch) % kTrain;
    const at::Tensor xb = x_train.slice(0, off, off + kBatch), yb = y_train.slice(0, off, off + kBatch);
    opt.zero_grad();
    const at::Tensor loss = (qat_model.forward(xb) - yb).square().mean();
    loss.backward();
    opt.step();
    if (metrics) metrics << "{\"step\":" << step << ",\"loss\":" << loss.item<double>() << "}\n";
  }
  const double qat_loss = mse(qat_model, x_test, y_test);

  // Convert and check the deployed model computes exactly what was trained.
  qat_model.eval();
  at::Tensor before, after;
  {
    torch::NoGradGuard g;
    before = qat_model.forward(x_test);
    transforms::convert(qat_model);
    after = qat_model.forward(x_test);
  }
  const double max_diff = (before - after).abs().max().item<double>();
  int64_t packed_bytes = 0, dense_bytes = 0;
  for (const auto& [name, layer] : qat_model.linears()) {
    packed_bytes += dynamic_cast<nn::QuantizedLinear&>(*layer).weight_bytes();
    dense_bytes += layer->in_features() * layer->out_features() * 4;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

  out << "QAT demo: student MLP " << kDim << "-" << kHidden << "-" << kDim << " distilled from a float teacher\n"
      << "weights " << spec.to_string() << ", activations int8/token, " << opts.steps << " QAT steps\n\n";
  char line[160];
  std::snprintf(line, sizeof line, "%-34s %14s\n", "model", "test MSE");
  out << line << std::string(49, '-') << "\n";
  std::snprintf(line, sizeof line, "%-34s %14.3e\n", "float (teacher copy)", 0.0);
  out << line;
  std::snprintf(line, sizeof line, "%-34s %14.3e\n", "PTQ round-to-nearest", ptq_loss);
  out << line;
  std::snprintf(line, sizeof line, "%-34s %14.3e\n", "QAT fine-tuned", qat_loss);
  out << line;
  std::snprintf(line, sizeof line, "%-34s %14.3e\n", "QAT error / PTQ error", qat_loss / ptq_loss);
  out << line << "\n";
  std::snprintf(line, sizeof line, "convert: max |deployed - trained| = %.1e  (%s)\n", max_diff,
                max_diff == 0.0 ? "bit-identical" : "MISMATCH");
  out << line;
  std::snprintf(line, sizeof line, "weights: %lld bytes packed vs %lld bytes fp32 (%.2f bits/weight)\n",
                static_cast<long long>(packed_bytes), static_cast<long long>(dense_bytes),
                8.0 * packed_bytes / (dense_bytes / 4.0));
  out << line;
  std::snprintf(line, sizeof line, "{\"demo\":\"qat_vs_ptq\",\"format\":\"%s\",\"ptq_mse\":%.6e,\"qat_mse\":%.6e,"
                "\"convert_max_diff\":%.1e,\"seconds\":%.1f}\n", spec.to_string().c_str(), ptq_loss, qat_loss,
                max_diff, secs);
  out << line;
  return max_diff == 0.0 ? 0 : 2;
}

}  // namespace qat::recipes
