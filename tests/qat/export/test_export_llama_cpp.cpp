// The real engine: llama.cpp loads our GGUF exports of SmolLM2 and computes the logits of our
// fake-quant forward; and llama-quantize's Q4_K_M file equals our Q4_K_M export byte for byte.
// llama.cpp's CPU matmuls quantize activations (Q8_0 / Q8_K) and keep the KV cache in fp16, so
// logits are judged by agreement (top-1, KL divergence), while the weights themselves are checked
// bit for bit elsewhere (test_export_smollm2.cpp, test_export_interop.cpp).
//
// Hidden ([.llama_cpp]): it needs llama.cpp, which scripts/check-llama-cpp builds from the
// llama-cpp-python sdist (PyPI) together with tests/ref/llama_cpp_logits.cpp and then runs this
// case with $QAT_LLAMA_CPP_LOGITS pointing at that tool. It prints one JSON line per export.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>

#include "qat/export/linears.h"
#include "qat/lora/lora.h"
#include "tests/qat/export/export_models.h"
#include "tests/support/catch_torch.h"

using namespace qat;

namespace {

// Genesis 1:1-5 (King James Version, public domain).
constexpr const char* kText =
    "In the beginning God created the heaven and the earth. And the earth was without form, and "
    "void; and darkness was upon the face of the deep. And the Spirit of God moved upon the face "
    "of "
    "the waters. And God said, Let there be light: and there was light. And God saw the light, "
    "that "
    "it was good: and God divided the light from the darkness. And God called the light Day, and "
    "the "
    "darkness he called Night. And the evening and the morning were the first day.";

// `flags`: the tool's options after its three paths ("--lora FILE", "--kv-f32").
at::Tensor llama_cpp_logits(const std::string& tool, const std::string& gguf,
                            const std::vector<int32_t>& ids, int64_t vocab,
                            const std::string& flags = "") {
  const std::string dir = test::temp_dir();
  {
    std::ofstream f(dir + "/ids.i32", std::ios::binary);
    f.write(reinterpret_cast<const char*>(ids.data()),
            static_cast<std::streamsize>(ids.size() * 4));
  }
  const std::string cmd = tool + " " + gguf + " " + dir + "/ids.i32 " + dir + "/logits.f32 " +
                          flags + " 2>" + dir + "/log.txt";
  const int rc = std::system(cmd.c_str());
  if (rc != 0) {
    std::ifstream log(dir + "/log.txt");
    const std::string text((std::istreambuf_iterator<char>(log)), {});
    FAIL("llama.cpp failed on " << gguf << ":\n"
                                << text.substr(text.size() > 4000 ? text.size() - 4000 : 0));
  }
  const std::vector<uint8_t> bytes = test::read_bytes(dir + "/logits.f32");
  const auto n = static_cast<int64_t>(ids.size());
  REQUIRE(static_cast<int64_t>(bytes.size()) == n * vocab * 4);
  at::Tensor t = at::empty({n, vocab}, at::kFloat);
  std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
  return t;
}

// KL(p || q) per position, float64.
at::Tensor kl_of(const at::Tensor& p_logits, const at::Tensor& q_logits) {
  const at::Tensor lp = at::log_softmax(p_logits.to(at::kDouble), -1);
  const at::Tensor lq = at::log_softmax(q_logits.to(at::kDouble), -1);
  return (lp.exp() * (lp - lq)).sum(-1);
}

}  // namespace

TEST_CASE("llama.cpp runs our SmolLM2 GGUF exports with the logits of our forward",
          "[.llama_cpp]") {
  const char* tool = std::getenv("QAT_LLAMA_CPP_LOGITS");
  REQUIRE(tool != nullptr);  // this case runs only when asked for (scripts/check-llama-cpp)
  const auto tokenizer = test::smollm_tokenizer_impl();
  const std::vector<int32_t> ids = tokenizer->encode(kText, /*add_special=*/false);
  REQUIRE(ids.size() > 64);

  struct Variant {
    std::string name;
    std::string weight;    // fake quant of every projection ("" = dense)
    std::string fallback;  // for the 576-wide projections when `weight` is a k-quant
    io::GgmlType dense_type;
    double min_top1, max_mean_kl;
  };
  // Dense F32 differs only by llama.cpp's fp16 KV cache and summation order; the quantized ones
  // also by its Q8 activations.
  const std::vector<Variant> variants{
      {"f32", "", "", io::GgmlType::kF32, 0.98, 1e-4},
      {"q8_0", "gguf_q8_0", "", io::GgmlType::kF32, 0.95, 2e-2},
      {"q4_0", "gguf_q4_0", "", io::GgmlType::kF32, 0.90, 4e-2},
      {"q4_k", "gguf_q4_k", "gguf_q5_0", io::GgmlType::kF32, 0.90, 4e-2},
  };
  const at::Tensor id_tensor =
      at::tensor(std::vector<int64_t>(ids.begin(), ids.end())).unsqueeze(0);
  at::Tensor float_logits;  // our float model, for the size of each quantization's own effect
  for (const Variant& v : variants) {
    CAPTURE(v.name);
    exporting::ExportSource src = exporting::load_export_source(models::default_model_path());
    auto& model = *src.model;
    if (!v.weight.empty()) {
      transforms::PrepareConfig pc;
      pc.layer.weight = test::weight_fq(v.weight);
      if (!v.fallback.empty()) {
        nn::FakeQuantLinearConfig fb;
        fb.weight = test::weight_fq(v.fallback);
        pc.fallback = fb;
      }
      transforms::prepare(model, pc);
    }
    const std::string dir = test::temp_dir();
    exporting::ExportOptions o;
    o.format = exporting::ExportFormat::kGguf;
    o.out = dir + "/smollm2-" + v.name + ".gguf";
    o.gguf_type = v.dense_type;
    o.gguf_embed_type = io::GgmlType::kF32;  // the embedding as our model holds it
    exporting::export_model(src, o);

    const at::Tensor ours = test::logits_of(model, id_tensor)[0].to(at::kDouble);
    if (v.weight.empty()) float_logits = ours;
    const at::Tensor theirs =
        llama_cpp_logits(tool, o.out, ids, model.config().vocab_size).to(at::kDouble);
    const at::Tensor kl = kl_of(ours, theirs);  // KL(ours || llama.cpp)
    const double top1 = ours.argmax(-1).eq(theirs.argmax(-1)).to(at::kDouble).mean().item<double>();
    const double mean_kl = kl.mean().item<double>();
    const double quant_kl = kl_of(float_logits, ours).mean().item<double>();  // KL(float || ours)
    std::cout << nlohmann::json{{"check", "llama_cpp_logits"},
                                {"export", v.name},
                                {"tokens", ids.size()},
                                {"top1_agreement", top1},
                                {"mean_kl", mean_kl},
                                {"max_kl", kl.max().item<double>()},
                                {"max_abs_logit_diff", (ours - theirs).abs().max().item<double>()},
                                {"mean_kl_float_vs_ours", quant_kl}}
                     .dump()
              << std::endl;
    CHECK(top1 >= v.min_top1);
    CHECK(mean_kl <= v.max_mean_kl);
    // At 4 bits the quantization moves the model far more than llama.cpp's own numerics do: the
    // engine runs our quantized model, not something near the float one.
    if (v.name == "q4_0" || v.name == "q4_k") CHECK(mean_kl < 0.2 * quant_kl);
  }
}

TEST_CASE("our Q4_K_M and Q5_K_M exports of SmolLM2 equal llama-quantize's, tensor for tensor",
          "[.llama_cpp]") {
  const std::string mix = GENERATE(std::string("q4_k_m"), std::string("q5_k_m"));
  std::string upper = mix;
  std::transform(upper.begin(), upper.end(), upper.begin(),
                 [](unsigned char c) { return std::toupper(c); });
  const char* quantize = std::getenv("QAT_LLAMA_QUANTIZE");
  REQUIRE(quantize != nullptr);  // this case runs only when asked for (scripts/check-llama-cpp)
  const std::string dir = test::temp_dir();
  exporting::ExportSource src = exporting::load_export_source(models::default_model_path());
  exporting::ExportOptions o;
  o.format = exporting::ExportFormat::kGguf;
  o.out = dir + "/f32.gguf";
  o.gguf_type = o.gguf_embed_type = io::GgmlType::kF32;
  exporting::export_model(src, o);  // the dense weights, for llama-quantize
  o.out = dir + "/ours-" + mix + ".gguf";
  o.gguf_mix = mix;
  exporting::export_model(src, o);
  const std::string cmd = std::string(quantize) + " " + dir + "/f32.gguf " + dir + "/theirs-" +
                          mix + ".gguf " + upper + " 2 > " + dir + "/quantize.log 2>&1";
  REQUIRE(std::system(cmd.c_str()) == 0);

  const io::GgufFile ours = io::GgufFile::open(dir + "/ours-" + mix + ".gguf");
  const io::GgufFile theirs = io::GgufFile::open(dir + "/theirs-" + mix + ".gguf");
  REQUIRE(ours.tensors().size() == theirs.tensors().size());
  std::map<std::string, int> types;
  size_t same_type = 0, same_bytes = 0;
  for (const auto& t : theirs.tensors()) {
    CAPTURE(t.name);
    REQUIRE(ours.has_tensor(t.name));
    const bool type_ok = ours.tensor_info(t.name).type == t.type;
    CHECK(type_ok);
    same_type += type_ok;
    const bool bytes_ok = type_ok && at::equal(ours.raw(t.name), theirs.raw(t.name));
    CHECK(bytes_ok);
    same_bytes += bytes_ok;
    ++types[io::ggml_type_name(t.type)];
  }
  std::cout << nlohmann::json{{"check", "llama_quantize_" + mix},
                              {"tensors", theirs.tensors().size()},
                              {"same_type", same_type},
                              {"same_bytes", same_bytes},
                              {"types", types}}
                   .dump()
            << std::endl;
}

TEST_CASE(
    "llama.cpp applies our LoRA adapter GGUF over the exact base with the logits of our "
    "model",
    "[.llama_cpp]") {
  const char* tool = std::getenv("QAT_LLAMA_CPP_LOGITS");
  REQUIRE(tool != nullptr);  // this case runs only when asked for (scripts/check-llama-cpp)
  const auto tokenizer = test::smollm_tokenizer_impl();
  const std::vector<int32_t> ids = tokenizer->encode(kText, /*add_special=*/false);
  const at::Tensor id_tensor =
      at::tensor(std::vector<int64_t>(ids.begin(), ids.end())).unsqueeze(0);
  const std::string dir = test::temp_dir();
  // Adapters on every projection, A ~ N(0, 1/in) as PEFT initializes it, B ~ N(0, 0.02) as
  // training leaves it: the adapter moves the model about as much as 4-bit rounding does.
  auto add_adapters = [](models::LlamaForCausalLM& m) {
    lora::LoraConfig lc;
    lc.r = 8;
    lc.alpha = 16.0;
    lc.target_modules = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                         "gate_proj", "up_proj", "down_proj"};
    lora::apply_lora(m, lc);
    torch::NoGradGuard no_grad;
    uint64_t seed = 2026;
    for (auto& [name, t] : lora::lora_parameters(m)) {
      const bool is_a = name.find("lora_A") != std::string::npos;
      t.copy_(test::randn(t.sizes().vec(), seed++,
                          is_a ? 1.0 / std::sqrt(static_cast<double>(t.size(1))) : 0.02));
    }
  };
  auto export_as = [&](exporting::ExportSource& src, const std::string& name,
                       exporting::ExportFormat f, io::GgmlType type, bool merge) {
    exporting::ExportOptions o;
    o.format = f;
    o.out = dir + "/" + name + ".gguf";
    o.gguf_type = type;
    o.gguf_embed_type = io::GgmlType::kF32;
    o.merge_lora = merge;
    exporting::export_model(src, o);
    return o.out;
  };
  const int64_t vocab = 49152;
  for (const std::string base_type : {"f32", "q4_0"}) {
    CAPTURE(base_type);
    exporting::ExportSource src = exporting::load_export_source(models::default_model_path());
    auto& model = *src.model;
    if (base_type == "q4_0") {
      transforms::PrepareConfig pc;
      pc.layer.weight = test::weight_fq("gguf_q4_0");
      transforms::prepare(model, pc);
    }
    const at::Tensor ours_base = test::logits_of(model, id_tensor)[0];
    add_adapters(model);
    const at::Tensor ours = test::logits_of(model, id_tensor)[0];
    const io::GgmlType dense = base_type == "f32" ? io::GgmlType::kF32 : io::GgmlType::kQ4_0;
    const std::string base =
        export_as(src, base_type + "-base", exporting::ExportFormat::kGguf, dense, false);
    const std::string adapter =
        export_as(src, base_type + "-adapter", exporting::ExportFormat::kGgufLora, dense, true);
    const std::string merged =
        export_as(src, base_type + "-merged", exporting::ExportFormat::kGguf, dense, true);
    const std::string kv = base_type == "f32" ? " --kv-f32" : "";
    const double kl_adapter =
        kl_of(ours, llama_cpp_logits(tool, base, ids, vocab, "--lora " + adapter + kv))
            .mean()
            .item<double>();
    const double kl_base =
        kl_of(ours_base, llama_cpp_logits(tool, base, ids, vocab, kv)).mean().item<double>();
    const double kl_merged =
        kl_of(ours, llama_cpp_logits(tool, merged, ids, vocab, kv)).mean().item<double>();
    const double adapter_effect = kl_of(ours_base, ours).mean().item<double>();
    std::cout << nlohmann::json{{"check", "llama_cpp_lora_adapter"},
                                {"base", base_type},
                                {"tokens", ids.size()},
                                {"mean_kl_base_plus_adapter", kl_adapter},
                                {"mean_kl_base_alone_vs_our_base", kl_base},
                                {"mean_kl_merged_file", kl_merged},
                                {"mean_kl_adapter_effect", adapter_effect}}
                     .dump()
              << std::endl;
    CHECK(adapter_effect > 0.01);  // the adapter changes the model: the check can fail
    if (base_type == "f32") {
      CHECK(kl_adapter <= 1e-5);
    } else {
      CHECK(kl_adapter <= 1.5 * kl_base);
      CHECK(kl_adapter < kl_merged);  // merging re-rounds fq(W) + BA: the QAT gain leaks
    }
  }
}
