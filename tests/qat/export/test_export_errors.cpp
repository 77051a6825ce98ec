// What export refuses and what it reports: formats that cannot hold a layer's quantization,
// existing outputs, missing adapters; the opt-in requantization and its error report; manifests.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "ops/kquant.h"
#include "ops/quantize.h"
#include "qat/export/linears.h"
#include "qat/io/gguf_blocks.h"
#include "qat/io/gguf_file.h"
#include "qat/io/gguf_llama.h"
#include "qat/transforms/awq.h"
#include "tests/qat/export/export_models.h"
#include "tests/support/catch_torch.h"

namespace {

namespace fs = std::filesystem;
using namespace qat;
using exporting::ExportFormat;

exporting::ExportReport export_to(const std::shared_ptr<models::LlamaForCausalLM>& m,
                                  ExportFormat f, const std::string& out,
                                  exporting::ExportOptions o = {}) {
  exporting::ExportSource src;
  src.model = m;
  src.tokenizer = test::smollm_tokenizer();
  src.name = "tiny";
  o.format = f;
  o.out = out;
  return exporting::export_model(src, o);
}

// A random model whose projections that a GGUF stores unpermuted (q_proj and k_proj rows are
// permuted for llama.cpp's RoPE) learn their scales in format `f`, with every learned parameter
// moved off its initial rule as training leaves it: x (1 + N(0, 0.05)), block mins + N(0, 0.01).
std::shared_ptr<models::LlamaForCausalLM> learned_scales_model(const std::string& f,
                                                               const models::LlamaConfig& cfg,
                                                               uint64_t model_seed,
                                                               uint64_t noise_seed) {
  auto m = test::random_model(cfg, model_seed);
  auto fq = test::weight_fq(f);
  fq.scale_mode = fake_quant::ScaleMode::kLearnable;
  test::fake_quantize(*m, {"mlp.*", "v_proj", "o_proj"}, fq);
  torch::NoGradGuard no_grad;
  for (auto& p : m->named_parameters()) {
    const std::string& k = p.key();
    if (k.find("weight_fake_quant.") == std::string::npos) continue;
    const auto shape = p.value().sizes().vec();
    if (k.size() >= 11 && k.compare(k.size() - 11, 11, ".zero_point") == 0) {
      p.value().add_(test::randn(shape, noise_seed++, 0.01));
    } else {
      p.value().mul_(1 + test::randn(shape, noise_seed++, 0.05));
    }
  }
  return m;
}

}  // namespace

TEST_CASE("Export names unknown formats and GGUF types, and refuses to overwrite without force",
          "[export]") {
  CHECK_THROWS_WITH(exporting::export_format_from_name("onnx"),
                    Catch::Contains("unknown format 'onnx'") && Catch::Contains("bnb-nf4"));
  CHECK(exporting::export_format_from_name("compressed-tensors") ==
        ExportFormat::kCompressedTensors);
  CHECK_THROWS_WITH(
      exporting::gguf_type_from_name("q3_k"),
      Catch::Contains("unknown GGUF type 'q3_k'") && Catch::Contains("q5_1, q4_k, q5_k, q6_k"));
  CHECK(exporting::gguf_type_from_name("Q4_1") == io::GgmlType::kQ4_1);
  CHECK(exporting::gguf_type_from_name("q5_1") == io::GgmlType::kQ5_1);
  CHECK(exporting::gguf_type_from_name("Q5_K") == io::GgmlType::kQ5_K);
  CHECK_THROWS_WITH(exporting::load_export_source("/nonexistent/model.gguf"),
                    Catch::Contains("does not exist"));

  const std::string dir = test::temp_dir();
  auto m = test::random_model(test::export_config(), 11);
  export_to(m, ExportFormat::kHfMerged, dir + "/hf");
  CHECK_THROWS_WITH(export_to(m, ExportFormat::kHfMerged, dir + "/hf"),
                    Catch::Contains("already exists; pass --force"));
  exporting::ExportOptions o;
  o.force = true;
  CHECK_NOTHROW(export_to(m, ExportFormat::kHfMerged, dir + "/hf", o));
  CHECK_FALSE(fs::exists(dir + "/hf.partial"));
  CHECK_THROWS_WITH(export_to(m, ExportFormat::kPeft, dir + "/adapter"),
                    Catch::Contains("no LoRA adapters"));
  CHECK_FALSE(fs::exists(dir + "/adapter"));  // a failed export leaves nothing behind
  CHECK_FALSE(fs::exists(dir + "/adapter.partial"));
}

TEST_CASE("A fake-quant scheme GGUF cannot store is an error unless requantization is asked for",
          "[export][gguf]") {
  const std::string dir = test::temp_dir();
  auto m = test::random_model(test::export_config(), 12);
  test::fake_quantize(*m, {"q_proj"},
                      test::weight_fq("int4", 64));  // groups of 64: not a GGUF block
  CHECK_THROWS_WITH(export_to(m, ExportFormat::kGguf, dir + "/a.gguf"),
                    Catch::Contains("model.layers.0.self_attn.q_proj") && Catch::Contains("int4") &&
                        Catch::Contains("--requantize"));
  CHECK_FALSE(fs::exists(dir + "/a.gguf"));

  exporting::ExportOptions o;
  o.requantize = true;
  o.gguf_type = io::GgmlType::kQ4_0;
  const auto r = export_to(m, ExportFormat::kGguf, dir + "/a.gguf", o);
  int requantized = 0;
  for (const auto& t : r.tensors) {
    if (t.origin.rfind("requantized", 0) != 0) continue;
    ++requantized;
    CHECK(t.type == "Q4_0");
    REQUIRE(t.max_abs_err);
    CHECK(*t.max_abs_err > 0);  // a real rounding happened and is reported
    CHECK(*t.rel_fro_err < 0.2);
  }
  CHECK(requantized == 2);
  CHECK_FALSE(r.notes.empty());
  CHECK(r.summary().find("largest rounding error") != std::string::npos);

  // int4 in groups of 32 maps onto Q4_0 only with fp16 scales.
  auto m2 = test::random_model(test::export_config(), 13);
  test::fake_quantize(*m2, {"k_proj"}, test::weight_fq("int4", 32, scheme::ScaleDtype::kFloat32));
  CHECK_THROWS_WITH(export_to(m2, ExportFormat::kGguf, dir + "/b.gguf"), Catch::Contains("fp16"));
}

TEST_CASE("int8 in groups of 32 with fp16 scales is stored as Q8_0 exactly", "[export][gguf]") {
  const std::string dir = test::temp_dir();
  auto m = test::random_model(test::export_config(), 14);
  test::fake_quantize(*m, {"mlp.*"}, test::weight_fq("int8", 32, scheme::ScaleDtype::kFloat16));
  const auto r = export_to(m, ExportFormat::kGguf, dir + "/m.gguf");
  const io::GgufFile f = io::GgufFile::open(dir + "/m.gguf");
  int checked = 0;
  for (const auto& l : exporting::collect_linears(*m)) {
    if (!l.fake_quant) continue;
    const std::string name = *io::hf_to_gguf_name(l.name + ".weight");
    CAPTURE(name);
    CHECK(f.tensor_info(name).type == io::GgmlType::kQ8_0);
    CHECK(test::bit_equal(f.dequantize(name), l.fake_quant->effective_weight()));
    ++checked;
  }
  CHECK(checked == 6);
  // The manifest states the scheme per tensor kind and the sizes.
  std::ifstream mf(dir + "/m.gguf.manifest.json");
  const auto man = nlohmann::json::parse(mf);
  CHECK(man["format"] == "gguf");
  CHECK(man["source"] == "tiny");
  CHECK(man["scheme"]["blk.*.ffn_up.weight"][0] == "Q8_0 (fake-quant int8/g32/float16 (exact))");
  CHECK(man["sizes"]["file_bytes"].get<int64_t>() ==
        static_cast<int64_t>(fs::file_size(dir + "/m.gguf")));
  CHECK(man["tool_version"] == exporting::tool_version());
}

TEST_CASE("Learned ggml block scales export exactly: the file holds the learned fp16 d and m",
          "[export][gguf][learned_blocks]") {
  const std::string dir = test::temp_dir();
  for (const std::string f : {"gguf_q8_0", "gguf_q4_0", "gguf_q4_1", "gguf_q5_0", "gguf_q5_1"}) {
    CAPTURE(f);
    auto m = learned_scales_model(f, test::export_config(), 16, 100);
    const std::string path = dir + "/" + f + ".gguf";
    export_to(m, ExportFormat::kGguf, path);
    const io::GgufFile file = io::GgufFile::open(path);
    const auto spec = scheme::QuantSpec::from_name(f);
    const int64_t block_bytes = spec.traits().block_bytes;
    int checked = 0;
    for (const auto& l : exporting::collect_linears(*m)) {
      if (!l.fake_quant) continue;
      const std::string name = *io::hf_to_gguf_name(l.name + ".weight");
      CAPTURE(name);
      CHECK(file.tensor_info(name).type == *io::block_type(spec.format));
      // Each block starts with its fp16 d (then m for Q4_1 and Q5_1): the learned values.
      const auto fq_layer = l.fake_quant->weight_quantizer();
      const qat::ops::QParams learned = fq_layer->qparams_for(l.fake_quant->weight());
      const at::Tensor raw = file.raw(name);
      const at::Tensor blocks = raw.reshape({raw.size(0), -1, block_bytes});
      auto half_at = [&](int64_t byte) {
        return blocks.slice(2, byte, byte + 2)
            .contiguous()
            .view(at::kHalf)
            .to(at::kFloat)
            .squeeze(2);
      };
      CHECK(at::equal(half_at(0), learned.scale));
      CHECK_FALSE(at::equal(learned.scale, qat::ops::choose_qparams(l.fake_quant->weight(), spec)
                                               .scale.to(at::kHalf)
                                               .to(at::kFloat)));
      if (spec.has_zero_point()) CHECK(at::equal(half_at(2), learned.zero));
      // The file dequantizes to the weight the forward trained with: max |difference| = 0.
      CHECK(test::bit_equal(file.dequantize(name), l.fake_quant->effective_weight()));
      ++checked;
    }
    CHECK(checked == 10);
  }
}

TEST_CASE("Learned k-quant scales export exactly: the file holds the learned blocks",
          "[export][gguf][learned_blocks][kquant]") {
  const std::string dir = test::temp_dir();
  for (const std::string f : {"gguf_q4_k", "gguf_q5_k", "gguf_q6_k"}) {
    CAPTURE(f);
    // Rows of 256 and 512: whole super-blocks.
    auto m = learned_scales_model(f, test::export_config(false, 256, 512, 4, 2), 17, 200);
    const std::string path = dir + "/" + f + ".gguf";
    export_to(m, ExportFormat::kGguf, path);
    const io::GgufFile file = io::GgufFile::open(path);
    const auto spec = scheme::QuantSpec::from_name(f);
    int checked = 0;
    for (const auto& l : exporting::collect_linears(*m)) {
      if (!l.fake_quant) continue;
      const std::string name = *io::hf_to_gguf_name(l.name + ".weight");
      CAPTURE(name);
      CHECK(file.tensor_info(name).type == *io::block_type(spec.format));
      const at::Tensor w = l.fake_quant->weight();
      const at::Tensor learned = l.fake_quant->weight_quantizer()->kquant_blocks(w);
      CHECK(at::equal(file.raw(name).reshape(learned.sizes()), learned));
      CHECK_FALSE(at::equal(learned, qat::ops::quantize_kquant(w, spec)));
      // The file dequantizes to the weight the forward trained with: max |difference| = 0.
      CHECK(test::bit_equal(file.dequantize(name), l.fake_quant->effective_weight()));
      CHECK(test::bit_equal(file.dequantize(name),
                            l.fake_quant->weight_quantizer()->forward(w.detach()).to(at::kFloat)));
      ++checked;
    }
    CHECK(checked == 10);
  }
}

TEST_CASE(
    "bitsandbytes export stores nf4 fake quant exactly without double quant and refuses it with "
    "double quant",
    "[export][bnb]") {
  const std::string dir = test::temp_dir();
  auto m = test::random_model(test::export_config(), 15);
  test::fake_quantize(*m, {"o_proj"}, test::weight_fq("nf4"));
  CHECK_THROWS_WITH(export_to(m, ExportFormat::kBnbNf4, dir + "/dq"),
                    Catch::Contains("o_proj") && Catch::Contains("double quant"));
  exporting::ExportOptions o;
  o.nf4_double_quant = false;
  o.hf_dtype = at::kFloat;
  const auto r = export_to(m, ExportFormat::kBnbNf4, dir + "/plain", o);
  int exact = 0;
  for (const auto& t : r.tensors) exact += t.origin.find("(exact)") != std::string::npos;
  CHECK(exact == 2);
  // ct refuses nf4 layers.
  exporting::ExportOptions ct;
  ct.int4_group_size = 32;
  CHECK_THROWS_WITH(export_to(m, ExportFormat::kCompressedTensors, dir + "/ct", ct),
                    Catch::Contains("int4 pack-quantized cannot store exactly"));
}

TEST_CASE("GGUF export refuses models llama.cpp would run differently", "[export][gguf]") {
  const std::string dir = test::temp_dir();
  auto cfg = test::export_config();
  cfg.sliding_window.assign(2, 16);
  cfg.model_type = "mistral";
  auto m = test::random_model(cfg, 16);
  CHECK_THROWS_WITH(export_to(m, ExportFormat::kGguf, dir + "/w.gguf"),
                    Catch::Contains("sliding-window"));
  // A tokenizer whose vocabulary does not match the model's embedding rows.
  auto small = test::export_config();
  small.vocab_size = 1000;
  auto m2 = test::random_model(small, 17);
  CHECK_THROWS_WITH(export_to(m2, ExportFormat::kGguf, dir + "/v.gguf"),
                    Catch::Contains("vocab_size is 1000"));
}

TEST_CASE(
    "GGUF k-quant export: whole super-blocks as Q4_K/Q6_K, other rows fall back as llama.cpp does",
    "[export][gguf][kquant]") {
  const std::string dir = test::temp_dir();
  // hidden 256: attention and gate/up rows are whole super-blocks; down_proj's 384 inputs are not.
  auto m = test::random_model(test::export_config(false, /*hidden=*/256, /*ffn=*/384), 15);
  exporting::ExportOptions o;
  o.gguf_type = exporting::gguf_type_from_name("q4_k");
  o.gguf_embed_type = exporting::gguf_type_from_name("Q6_K");
  const auto r = export_to(m, ExportFormat::kGguf, dir + "/m.gguf", o);
  const io::GgufFile f = io::GgufFile::open(dir + "/m.gguf");
  const auto q4k = scheme::QuantSpec::from_name("gguf_q4_k");
  for (const auto& l : exporting::collect_linears(*m)) {
    const std::string name = *io::hf_to_gguf_name(l.name + ".weight");
    CAPTURE(name);
    if (l.name == "lm_head") {
      CHECK(f.tensor_info(name).type == io::GgmlType::kQ6_K);  // the embedding type
      continue;
    }
    if (l.name.find("down_proj") != std::string::npos) {
      CHECK(f.tensor_info(name).type == io::GgmlType::kQ5_0);  // Q4_K's fallback, as llama-quantize
      continue;
    }
    CHECK(f.tensor_info(name).type == io::GgmlType::kQ4_K);
    // Written from the dense weight with ggml's reference rule; q/k rows are permuted in the file,
    // so compare the layers that are not.
    if (name.find("attn_q") == std::string::npos && name.find("attn_k") == std::string::npos)
      CHECK(test::bit_equal(f.dequantize(name), ops::fake_quantize_kquant(l.merged_weight(), q4k)));
  }
  CHECK(f.tensor_info("token_embd.weight").type == io::GgmlType::kQ6_K);
  CHECK(f.metadata().get_u32("general.file_type") == 14);  // MOSTLY_Q4_K_S
  int fallbacks = 0;
  for (const auto& n : r.notes)
    fallbacks += n.find("not whole 256-element super-blocks") != std::string::npos;
  CHECK(fallbacks == 2);  // blk.0.ffn_down and blk.1.ffn_down
}

TEST_CASE("Unmerged LoRA exports refuse a base that would not hold the trained weights",
          "[export][lora]") {
  const std::string dir = test::temp_dir();
  auto m = test::random_model(test::export_config(), 14);
  test::fake_quantize(*m, {"self_attn.*"}, test::weight_fq("int4", 32));
  CHECK_THROWS_WITH(export_to(m, ExportFormat::kGgufLora, dir + "/none.gguf"),
                    Catch::Contains("no LoRA adapters"));
  test::add_lora(*m, {"q_proj"}, 14);
  exporting::ExportOptions o;
  o.merge_lora = false;  // bf16 (the HF default) rounds the int4 lattice
  CHECK_THROWS_WITH(export_to(m, ExportFormat::kHfMerged, dir + "/bf16", o),
                    Catch::Contains("--no-merge") && Catch::Contains("self_attn") &&
                        Catch::Contains("--dtype fp32"));
  CHECK_FALSE(fs::exists(dir + "/bf16"));
  o.hf_dtype = at::kFloat;
  const auto r = export_to(m, ExportFormat::kHfMerged, dir + "/fp32", o);
  bool noted = false;
  for (const auto& n : r.notes)
    noted = noted || n.find("LoRA adapters left out") != std::string::npos;
  CHECK(noted);
  // The merged export still folds the adapter in (and may round it).
  CHECK_NOTHROW(export_to(m, ExportFormat::kHfMerged, dir + "/merged"));
  exporting::ExportOptions q8;
  q8.gguf_adapter_type = io::GgmlType::kQ8_0;
  CHECK_THROWS_WITH(export_to(m, ExportFormat::kGgufLora, dir + "/q8.gguf", q8),
                    Catch::Contains("f32, f16 or bf16"));
}

TEST_CASE("AWQ-scaled models export bit-exactly: the GGUF dequantizes to the fake-quant weights",
          "[export][gguf][awq]") {
  auto m = test::random_model(test::export_config(), 31);
  test::fake_quantize(*m, {"self_attn.*", "mlp.*"}, test::weight_fq("gguf_q4_0"));
  std::vector<transforms::CalibrationBatch> batches = {
      {at::randint(0, test::kSmolVocab, {2, 32}, at::detail::createCPUGenerator(31)), {}}};
  const auto reports = transforms::awq_llama(*m, batches, {});
  int scaled = 0;
  for (const auto& r : reports) scaled += r.skipped.empty() && r.alpha > 0;
  CHECK(scaled > 0);
  const std::string path = test::temp_dir() + "/awq.gguf";
  export_to(m, ExportFormat::kGguf, path);
  const io::GgufFile file = io::GgufFile::open(path);
  const auto& cfg = m->config();
  int checked = 0;
  for (const auto& l : exporting::collect_linears(*m)) {
    if (!l.fake_quant) continue;
    CAPTURE(l.name);
    at::Tensor ours = l.fake_quant->effective_weight();
    if (l.name.find("q_proj") != std::string::npos)
      ours = io::permute_qk(ours, cfg.num_attention_heads);
    if (l.name.find("k_proj") != std::string::npos)
      ours = io::permute_qk(ours, cfg.num_key_value_heads);
    CHECK(test::bit_equal(file.dequantize(*io::hf_to_gguf_name(l.name + ".weight")), ours));
    ++checked;
  }
  CHECK(checked == 14);
}
