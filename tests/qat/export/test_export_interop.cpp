// Every export format read back by its reference implementation (gguf-py, transformers, peft,
// bitsandbytes NF4 and 8-bit, compressed-tensors). The models are exported first, then one Python
// run (tests/ref/export_check.py) reads them all; the sections compare its results with our model.
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "ops/kquant.h"
#include "ops/quantize.h"
#include "qat/export/linears.h"
#include "qat/io/gguf_file.h"
#include "qat/io/gguf_llama.h"
#include "qat/io/safetensors_torch.h"
#include "qat/models/loader.h"
#include "tests/qat/export/export_models.h"
#include "tests/support/catch_torch.h"

namespace {

namespace fs = std::filesystem;
using namespace qat;
using exporting::ExportFormat;

struct Case {
  std::shared_ptr<models::LlamaForCausalLM> model;
  exporting::ExportReport report;
  std::string result;  // the reference's output (safetensors)
  at::Tensor logits;   // ours, where the case compares logits
};

struct Suite {
  std::string root;
  at::Tensor ids;
  std::string ids_path;
  std::map<std::string, Case> cases;
  std::string base_dir;  // PEFT's base model (HF, float32)

  std::map<std::string, at::Tensor> result(const std::string& name) const {
    const Case& c = cases.at(name);
    if (fs::exists(c.result + ".error")) {
      std::ifstream f(c.result + ".error");
      const std::string err((std::istreambuf_iterator<char>(f)), {});
      FAIL("reference reader failed on the " << name << " export: " << err);
    }
    REQUIRE(fs::exists(c.result));
    return io::load_safetensors(c.result);
  }
  nlohmann::json result_json(const std::string& name) const {
    std::ifstream f(cases.at(name).result + ".json");
    return nlohmann::json::parse(f);
  }
};

exporting::ExportReport run_export(const std::shared_ptr<models::LlamaForCausalLM>& m,
                                   const exporting::TokenizerSource& tok,
                                   exporting::ExportOptions opt) {
  exporting::ExportSource src;
  src.model = m;
  src.tokenizer = tok;
  src.name = "tiny-random-llama";
  return exporting::export_model(src, opt);
}

const Suite& suite() {
  static const Suite s = [] {
    Suite s;
    s.root = test::temp_dir();
    s.ids = at::randint(0, test::kSmolVocab, {2, 12}, at::detail::createCPUGenerator(17));
    s.ids_path = s.root + "/ids.safetensors";
    io::save_safetensors(s.ids_path, {{"input_ids", s.ids}});
    nlohmann::json jobs = nlohmann::json::array();
    auto job = [&](const std::string& name, nlohmann::json j) {
      s.cases[name].result = s.root + "/" + name + ".result.safetensors";
      j["out"] = s.cases[name].result;
      jobs.push_back(std::move(j));
    };
    const auto& tok = test::smollm_tokenizer();

    {  // GGUF, every linear trained with a fake quant GGUF stores exactly; embeddings F32.
      auto m = test::random_model(test::export_config(), 1);
      test::fake_quantize(*m, {"q_proj"}, test::weight_fq("gguf_q4_0"));
      test::fake_quantize(*m, {"k_proj"}, test::weight_fq("gguf_q5_0"));
      test::fake_quantize(*m, {"v_proj"},
                          test::weight_fq("int4", 32, scheme::ScaleDtype::kFloat16));
      test::fake_quantize(*m, {"o_proj"}, test::weight_fq("gguf_q5_1"));
      test::fake_quantize(*m, {"gate_proj", "up_proj"}, test::weight_fq("gguf_q8_0"));
      test::fake_quantize(*m, {"down_proj"}, test::weight_fq("gguf_q4_1"));
      exporting::ExportOptions o;
      o.format = ExportFormat::kGguf;
      o.out = s.root + "/exact.gguf";
      o.gguf_embed_type = io::GgmlType::kF32;
      Case& c = s.cases["gguf_exact"];
      c.model = m;
      c.report = run_export(m, tok, o);
      c.logits = test::logits_of(*m, s.ids);
      job("gguf_exact", {{"kind", "gguf"}, {"path", o.out}, {"input_ids", s.ids_path}});
    }
    {  // GGUF k-quants: widths of whole 256-element super-blocks, linears trained with Q4_K, Q5_K
       // and Q6_K fake quant, the embedding quantized to Q6_K.
      auto m = test::random_model(test::export_config(false, /*hidden=*/256, /*ffn=*/512), 5);
      test::fake_quantize(*m, {"self_attn.*"}, test::weight_fq("gguf_q4_k"));
      test::fake_quantize(*m, {"down_proj"}, test::weight_fq("gguf_q5_k"));
      transforms::PrepareConfig q6k;  // lm_head too (prepare leaves it dense by default)
      q6k.include = {"gate_proj", "up_proj", "lm_head"};
      q6k.exclude = {};
      q6k.layer.weight = test::weight_fq("gguf_q6_k");
      transforms::prepare(*m, q6k);
      exporting::ExportOptions o;
      o.format = ExportFormat::kGguf;
      o.out = s.root + "/kquant.gguf";
      o.gguf_embed_type = io::GgmlType::kQ6_K;
      Case& c = s.cases["gguf_kquant"];
      c.model = m;
      c.report = run_export(m, tok, o);
      // The file's embedding is Q6_K: compare logits with our model on those values.
      const at::Tensor emb = m->model().embed_tokens()->weight;
      const at::Tensor emb_q =
          ops::fake_quantize_kquant(emb.detach(), scheme::QuantSpec::from_name("gguf_q6_k"));
      {
        torch::NoGradGuard no_grad;
        emb.copy_(emb_q);
      }
      c.logits = test::logits_of(*m, s.ids);
      job("gguf_kquant", {{"kind", "gguf"}, {"path", o.out}, {"input_ids", s.ids_path}});
    }
    {  // HF merged bf16: LoRA over int4 fake quant and over dense; tokenizer converted from GGUF.
      auto m = test::random_model(test::export_config(), 3);
      test::fake_quantize(*m, {"self_attn.*"}, test::weight_fq("int4", 32));
      test::add_lora(*m, {"q_proj", "v_proj", "up_proj"}, 3);
      exporting::ExportOptions o;
      o.format = ExportFormat::kHfMerged;
      o.out = s.root + "/hf";
      Case& c = s.cases["hf"];
      c.model = m;
      c.report = run_export(m, tok, o);
      // Both sides compute with the bf16 weights of the file: ours loaded back in float32.
      c.logits = test::logits_of(*models::load_hf_model(o.out), s.ids);
      job("hf", {{"kind", "hf"},
                 {"dir", o.out},
                 {"input_ids", s.ids_path},
                 {"strings", test::tokenizer_strings()}});
    }
    {  // GGUF from dense + LoRA layers (merged, quantized to Q4_1), tied embeddings in Q8_0, and
       // the tokenizer read from the HF export above (tokenizer.json -> GGUF keys).
      auto m = test::random_model(test::export_config(/*tied=*/true), 2);
      test::add_lora(*m, {"q_proj", "v_proj"}, 2);
      exporting::TokenizerSource hf_tok;
      hf_tok.hf_dir = s.root + "/hf";
      hf_tok.chat_template = tok.chat_template;
      exporting::ExportOptions o;
      o.format = ExportFormat::kGguf;
      o.out = s.root + "/dense.gguf";
      o.gguf_type = io::GgmlType::kQ4_1;
      o.gguf_embed_type = io::GgmlType::kQ8_0;
      Case& c = s.cases["gguf_dense"];
      c.model = m;
      c.report = run_export(m, hf_tok, o);
      job("gguf_dense", {{"kind", "gguf"}, {"path", o.out}});
    }
    {  // PEFT: the base as an HF float32 checkpoint, then rsLoRA adapters over it.
      auto m = test::random_model(test::export_config(), 4);
      exporting::ExportOptions base;
      base.format = ExportFormat::kHfMerged;
      base.out = s.base_dir = s.root + "/peft_base";
      base.hf_dtype = at::kFloat;
      run_export(m, tok, base);
      test::add_lora(*m, {"q_proj", "v_proj", "down_proj"}, 4, /*r=*/4, /*alpha=*/6.0,
                     /*rslora=*/true);
      lora::LoraConfig lc;
      lc.r = 4;
      lc.alpha = 6.0;
      lc.use_rslora = true;
      exporting::ExportOptions o;
      o.format = ExportFormat::kPeft;
      o.out = s.root + "/adapter";
      o.lora_config = lc;
      o.base_model_name_or_path = s.base_dir;
      Case& c = s.cases["peft"];
      c.model = m;
      c.report = run_export(m, tok, o);
      c.logits = test::logits_of(*m, s.ids);
      job("peft", {{"kind", "peft"},
                   {"base_dir", s.base_dir},
                   {"adapter_dir", o.out},
                   {"input_ids", s.ids_path}});
    }
    {  // QAT + LoRA shipped unmerged: the Q4_0 fake-quant base as its trained blocks (--no-merge)
       // and a llama.cpp adapter GGUF beside it; q/k carry adapters (their lora_b is permuted).
      auto m = test::random_model(test::export_config(), 7);
      test::fake_quantize(*m, {"self_attn.*", "mlp.*"}, test::weight_fq("gguf_q4_0"));
      test::add_lora(*m, {"q_proj", "k_proj", "v_proj", "down_proj"}, 7, /*r=*/2, /*alpha=*/3.0);
      exporting::ExportOptions base;
      base.format = ExportFormat::kGguf;
      base.out = s.root + "/lora_base.gguf";
      base.merge_lora = false;
      base.gguf_embed_type = io::GgmlType::kF32;
      Case& b = s.cases["gguf_lora_base"];
      b.model = m;
      b.report = run_export(m, tok, base);
      job("gguf_lora_base", {{"kind", "gguf"}, {"path", base.out}});
      exporting::ExportOptions o;
      o.format = ExportFormat::kGgufLora;
      o.out = s.root + "/adapter.gguf";
      Case& c = s.cases["gguf_lora"];
      c.model = m;
      c.report = run_export(m, tok, o);
      job("gguf_lora", {{"kind", "gguf"}, {"path", o.out}});
    }
    {  // PEFT over the exact base: an int4/g32 fake-quant base written unmerged in float32 (the
       // trained lattice), the adapters over it in PEFT's format; transformers + peft run both.
      auto m = test::random_model(test::export_config(), 8);
      test::fake_quantize(*m, {"self_attn.*", "mlp.*"}, test::weight_fq("int4", 32));
      test::add_lora(*m, {"q_proj", "o_proj", "up_proj"}, 8);
      exporting::ExportOptions base;
      base.format = ExportFormat::kHfMerged;
      base.out = s.root + "/qat_base";
      base.hf_dtype = at::kFloat;
      base.merge_lora = false;
      Case& b = s.cases["peft_qat_base"];
      b.model = m;
      b.report = run_export(m, tok, base);
      exporting::ExportOptions o;
      o.format = ExportFormat::kPeft;
      o.out = s.root + "/qat_adapter";
      o.base_model_name_or_path = base.out;
      Case& c = s.cases["peft_qat"];
      c.model = m;
      c.report = run_export(m, tok, o);
      c.logits = test::logits_of(*m, s.ids);
      job("peft_qat", {{"kind", "peft"},
                       {"base_dir", base.out},
                       {"adapter_dir", o.out},
                       {"input_ids", s.ids_path}});
    }
    {  // bitsandbytes: NF4 attention (QLoRA base, one with an adapter), dense MLP; float32 compute
       // dtype.
      auto m = test::random_model(test::export_config(), 5);
      test::to_nf4(*m, {"self_attn.*"});
      test::add_lora(*m, {"o_proj"}, 5);
      exporting::ExportOptions o;
      o.format = ExportFormat::kBnbNf4;
      o.out = s.root + "/bnb";
      o.hf_dtype = at::kFloat;
      Case& c = s.cases["bnb"];
      c.model = m;
      c.report = run_export(m, tok, o);
      job("bnb", {{"kind", "bnb"}, {"dir", o.out}});
    }
    {  // compressed-tensors int4: int4/g32 fp16 fake quant on attention (exact), dense MLP in
       // groups of 64.
      auto m = test::random_model(test::export_config(), 6);
      test::fake_quantize(*m, {"self_attn.*"},
                          test::weight_fq("int4", 32, scheme::ScaleDtype::kFloat16));
      exporting::ExportOptions o;
      o.format = ExportFormat::kCompressedTensors;
      o.out = s.root + "/ct";
      o.hf_dtype = at::kHalf;
      o.int4_group_size = 64;
      Case& c = s.cases["ct"];
      c.model = m;
      c.report = run_export(m, tok, o);
      job("ct", {{"kind", "ct"}, {"dir", o.out}});
    }
    // compressed-tensors' 8-bit schemes: int8 (w8a16, w8a8) and e4m3 (fp8) fake quant per output
    // channel with fp16 scales on attention (exact; w8a8's q_proj also trains its activations as
    // the engine quantizes them), the MLP dense (quantized per channel at export).
    for (const auto& [name, scheme, fmt] :
         {std::tuple<std::string, exporting::CtScheme, std::string>{
              "ct_w8a16", exporting::CtScheme::kW8A16, "int8"},
          {"ct_w8a8", exporting::CtScheme::kW8A8, "int8"},
          {"ct_fp8", exporting::CtScheme::kFp8, "fp8_e4m3"}}) {
      auto m = test::random_model(test::export_config(), 9);
      fake_quant::FakeQuantizerConfig fq = test::weight_fq(fmt, 0, scheme::ScaleDtype::kFloat16);
      fq.spec = fq.spec.with(scheme::Granularity::per_axis(0));
      transforms::PrepareConfig pc;
      pc.include = {"self_attn.*"};
      pc.layer.weight = fq;
      if (scheme == exporting::CtScheme::kW8A8) {
        fake_quant::FakeQuantizerConfig a;
        a.spec = scheme::QuantSpec::from_name("int8").with(scheme::Granularity::per_token());
        pc.layer.activation = a;
      }
      transforms::prepare(*m, pc);
      exporting::ExportOptions o;
      o.format = ExportFormat::kCompressedTensors;
      o.ct_scheme = scheme;
      o.out = s.root + "/" + name;
      // w8a16 stores the fp16-valued scales in float32, so that transformers' decompression
      // (code * scale in the scale's dtype) is exact and the logits can be compared closely.
      o.hf_dtype = scheme == exporting::CtScheme::kW8A16 ? at::kFloat : at::kHalf;
      Case& c = s.cases[name];
      c.model = m;
      c.report = run_export(m, tok, o);
      job(name, {{"kind", "ct8"}, {"dir", o.out}, {"input_ids", s.ids_path}});
    }
    // bitsandbytes 8-bit (LLM.int8): a dense model, which transformers also quantizes itself from
    // its float32 HF export (same codes, SCB and logits expected), and one whose attention trained
    // int8 per output channel (fp32 scales), written with its own codes.
    for (const bool trained : {false, true}) {
      const std::string name = trained ? "bnb8_qat" : "bnb8_dense";
      auto m = test::random_model(test::export_config(), 10);
      if (trained) {
        fake_quant::FakeQuantizerConfig fq = test::weight_fq("int8");
        fq.spec = fq.spec.with(scheme::Granularity::per_axis(0));
        test::fake_quantize(*m, {"self_attn.*"}, fq);
      }
      exporting::ExportOptions o;
      o.format = ExportFormat::kBnbInt8;
      o.out = s.root + "/" + name;
      o.hf_dtype = at::kFloat;
      Case& c = s.cases[name];
      c.model = m;
      c.report = run_export(m, tok, o);
      c.logits = test::logits_of(*m, s.ids);
      nlohmann::json j = {{"kind", "bnb8"}, {"dir", o.out}, {"input_ids", s.ids_path}};
      if (!trained) {
        exporting::ExportOptions f;
        f.format = ExportFormat::kHfMerged;
        f.out = s.root + "/" + name + "_float";
        f.hf_dtype = at::kFloat;
        run_export(m, tok, f);
        j["float_dir"] = f.out;
      }
      job(name, j);
    }
    const std::string jobs_path = s.root + "/jobs.json";
    std::ofstream(jobs_path) << jobs.dump(1);
    test::run_python("export_check.py",
                     {jobs_path});  // failures are reported per job (.error files)
    return s;
  }();
  return s;
}

// Our weight of a linear as a GGUF reader returns it: q/k rows in ggml's order, numpy shape [out,
// in].
at::Tensor gguf_order(const std::string& hf, at::Tensor w, const models::LlamaConfig& cfg) {
  if (hf.find(".self_attn.q_proj") != std::string::npos)
    return io::permute_qk(w, cfg.num_attention_heads);
  if (hf.find(".self_attn.k_proj") != std::string::npos)
    return io::permute_qk(w, cfg.num_key_value_heads);
  return w;
}

double max_diff(const at::Tensor& a, const at::Tensor& b) {
  return (a - b).abs().max().item<double>();
}

}  // namespace

TEST_CASE("Exports load in the reference readers with our weights and logits",
          "[export][interop][slow]") {
  const Suite& s = suite();

  SECTION(
      "GGUF: fake-quant linears dequantize bit for bit in gguf-py, transformers' logits match") {
    const Case& c = s.cases.at("gguf_exact");
    const auto ref = s.result("gguf_exact");
    const auto& cfg = c.model->config();
    int checked = 0;
    for (const auto& l : exporting::collect_linears(*c.model)) {
      if (!l.fake_quant) continue;
      const auto fw = exporting::fake_quant_weight(*l.fake_quant);
      // Contract: the fake-quant forward's weight == what the file dequantizes to, bit for bit.
      const at::Tensor ours = gguf_order(l.name, l.fake_quant->effective_weight(), cfg);
      const std::string name = *io::hf_to_gguf_name(l.name + ".weight");
      CAPTURE(name, fw.spec.to_string());
      REQUIRE(ref.count("t/" + name));
      CHECK(test::bit_equal(ref.at("t/" + name), ours));
      ++checked;
    }
    CHECK(checked == 14);
    for (const auto& r : c.report.tensors) {
      if (r.name.find("attn_v") != std::string::npos)
        CHECK(r.type == "Q4_0");  // int4/g32 fp16 -> Q4_0
      if (r.name.find("attn_output") != std::string::npos) CHECK(r.type == "Q5_1");
    }
    // Metadata types exactly as llama.cpp checks them; tokenizer keys copied.
    const auto info = s.result_json("gguf_exact");
    for (const char* k :
         {"llama.context_length", "llama.embedding_length", "llama.block_count",
          "llama.feed_forward_length", "llama.attention.head_count",
          "llama.attention.head_count_kv", "llama.rope.dimension_count", "general.alignment",
          "general.quantization_version", "tokenizer.ggml.bos_token_id"}) {
      CAPTURE(k);
      CHECK(info["types"].value(k, "") == "UINT32");
    }
    CHECK(info["types"]["llama.attention.layer_norm_rms_epsilon"] == "FLOAT32");
    CHECK(info["types"]["llama.rope.freq_base"] == "FLOAT32");
    CHECK(info["types"]["tokenizer.ggml.token_type"] == "ARRAY/INT32");
    CHECK(info["strings"]["general.architecture"] == "llama");
    CHECK(info["strings"]["tokenizer.ggml.tokens.len"] == test::kSmolVocab);
    CHECK(info["tensor_types"].contains("output.weight"));
    // transformers' own GGUF loader (it undoes the Q/K permutation itself) gives our logits:
    // float32 on both sides, same weights; 1e-4 covers summation order in attention.
    CHECK(max_diff(ref.at("logits"), c.logits) < 1e-4);
  }

  SECTION("GGUF k-quants: Q4_K/Q5_K/Q6_K fake-quant linears dequantize bit for bit in gguf-py") {
    const Case& c = s.cases.at("gguf_kquant");
    const auto ref = s.result("gguf_kquant");
    const auto& cfg = c.model->config();
    int checked = 0;
    for (const auto& l : exporting::collect_linears(*c.model)) {
      if (!l.fake_quant) continue;
      const at::Tensor ours = gguf_order(l.name, l.fake_quant->effective_weight(), cfg);
      const std::string name = *io::hf_to_gguf_name(l.name + ".weight");
      CAPTURE(name);
      REQUIRE(ref.count("t/" + name));
      CHECK(test::bit_equal(ref.at("t/" + name), ours));
      ++checked;
    }
    CHECK(checked == 15);  // 14 projections + lm_head
    for (const auto& r : c.report.tensors) {
      CAPTURE(r.name);
      if (r.name.find("ffn_up") != std::string::npos) CHECK(r.type == "Q6_K");
      if (r.name.find("attn_q") != std::string::npos) CHECK(r.type == "Q4_K");
      if (r.name.find("ffn_down") != std::string::npos) {
        CHECK(r.type == "Q5_K");
        CHECK(r.origin.find("(exact)") != std::string::npos);
      }
    }
    // (The model's embedding holds the Q6_K values since the export; see the suite.)
    CHECK(test::bit_equal(ref.at("t/token_embd.weight"),
                          c.model->model().embed_tokens()->weight.detach()));
    CHECK(max_diff(ref.at("logits"), c.logits) < 1e-4);
  }

  SECTION("GGUF: dense and LoRA layers are merged and quantized with ggml's reference rule") {
    const Case& c = s.cases.at("gguf_dense");
    const auto ref = s.result("gguf_dense");
    const auto& cfg = c.model->config();
    const auto q41 = scheme::QuantSpec::from_name("gguf_q4_1");
    for (const auto& l : exporting::collect_linears(*c.model)) {
      const std::string name = *io::hf_to_gguf_name(l.name + ".weight");
      CAPTURE(name);
      const at::Tensor expected = ops::fake_quantize_dynamic(l.merged_weight(), q41, false).y;
      CHECK(test::bit_equal(ref.at("t/" + name), gguf_order(l.name, expected, cfg)));
    }
    const at::Tensor emb = c.model->model().embed_tokens()->weight.detach();
    CHECK(test::bit_equal(
        ref.at("t/token_embd.weight"),
        ops::fake_quantize_dynamic(emb, scheme::QuantSpec::from_name("gguf_q8_0"), false).y));
    CHECK(ref.count("t/output.weight") == 0);  // tied: llama.cpp reuses token_embd
    CHECK(test::bit_equal(ref.at("t/output_norm.weight"),
                          c.model->model().named_parameters()["norm.weight"]));
    // Tokenizer converted from tokenizer.json back to GGUF keys equals the original GGUF's.
    const io::GgufFile f = io::GgufFile::open(c.report.out);
    const auto& src = *test::smollm_tokenizer().gguf;
    for (const char* k :
         {"tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens",
          "tokenizer.ggml.token_type", "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id",
          "tokenizer.ggml.eos_token_id", "tokenizer.ggml.padding_token_id",
          "tokenizer.ggml.add_bos_token", "tokenizer.chat_template"}) {
      CAPTURE(k);
      REQUIRE(f.metadata().has(k));
      CHECK(f.metadata().at(k) == src.at(k));
    }
  }

  SECTION("HF merged bf16: transformers' logits and tokenizer match ours") {
    const Case& c = s.cases.at("hf");
    const auto ref = s.result("hf");
    // Both run float32 on the same bf16 weights; 1e-4 covers summation order.
    CHECK(max_diff(ref.at("logits"), c.logits) < 1e-4);
    // The file holds merged weights rounded once to bf16.
    const auto file = io::load_safetensors(c.report.out);
    for (const auto& l : exporting::collect_linears(*c.model)) {
      CAPTURE(l.name);
      CHECK(test::bit_equal(file.at(l.name + ".weight"), l.merged_weight().to(at::kBFloat16)));
    }
    const auto ours = test::smollm_tokenizer_impl();
    for (size_t i = 0; i < test::tokenizer_strings().size(); ++i) {
      const std::string& text = test::tokenizer_strings()[i];
      CAPTURE(text);
      const auto ids = ours->encode(text);
      const at::Tensor hf = ref.at("ids/" + std::to_string(i));
      CHECK(std::vector<int64_t>(ids.begin(), ids.end()) ==
            std::vector<int64_t>(hf.data_ptr<int64_t>(), hf.data_ptr<int64_t>() + hf.numel()));
    }
  }

  SECTION("PEFT: the adapter over the base model gives our logits") {
    const Case& c = s.cases.at("peft");
    const auto ref = s.result("peft");
    CHECK(max_diff(ref.at("logits"), c.logits) < 1e-4);
    std::ifstream f(c.report.out + "/adapter_config.json");
    const auto cfg = nlohmann::json::parse(f);
    CHECK(cfg["r"] == 4);
    CHECK(cfg["use_rslora"] == true);
    CHECK(cfg["target_modules"] == nlohmann::json({"down_proj", "q_proj", "v_proj"}));
  }

  SECTION(
      "GGUF LoRA adapter: llama.cpp's keys and shapes in gguf-py; the base holds the trained "
      "blocks") {
    const Case& c = s.cases.at("gguf_lora");
    const auto ref = s.result("gguf_lora");
    const auto info = s.result_json("gguf_lora");
    const auto& cfg = c.model->config();
    CHECK(info["strings"]["general.type"] == "adapter");
    CHECK(info["strings"]["general.architecture"] == "llama");
    CHECK(info["strings"]["adapter.type"] == "lora");
    CHECK(info["types"]["adapter.lora.alpha"] == "FLOAT32");
    CHECK(info["strings"]["adapter.lora.alpha"].get<double>() == 3.0);  // scaling 1.5 * r 2
    CHECK(ref.size() == 4 * 2 * 2);  // 2 layers x 4 targets x (lora_a, lora_b)
    const auto base = s.result("gguf_lora_base");
    int adapted = 0, exact = 0;
    for (const auto& l : exporting::collect_linears(*c.model)) {
      const std::string name = *io::hf_to_gguf_name(l.name + ".weight");
      CAPTURE(name);
      if (l.fake_quant) {
        // The base file: the trained blocks, not fq(W) + BA re-rounded.
        REQUIRE(base.count("t/" + name));
        CHECK(test::bit_equal(base.at("t/" + name),
                              gguf_order(l.name, l.fake_quant->effective_weight(), cfg)));
        ++exact;
      }
      if (!l.lora) continue;
      REQUIRE(ref.count("t/" + name + ".lora_a"));
      const at::Tensor a = ref.at("t/" + name + ".lora_a"), b = ref.at("t/" + name + ".lora_b");
      CHECK(a.sizes() == l.lora->lora_A().sizes());  // [r, in]: ggml ne [in, r]
      CHECK(b.sizes() == l.lora->lora_B().sizes());  // [out, r]
      CHECK(test::bit_equal(a, l.lora->lora_A()));
      CHECK(test::bit_equal(b, gguf_order(l.name, l.lora->lora_B(), cfg)));
      ++adapted;
    }
    CHECK(adapted == 8);
    CHECK(exact == 14);
    for (const auto& r : s.cases.at("gguf_lora_base").report.tensors) {
      if (r.name.rfind("blk.", 0) == 0 && r.name.find("norm") == std::string::npos)
        CHECK(r.origin.find("(exact)") != std::string::npos);
    }
  }

  SECTION("PEFT over the exact QAT base: transformers + peft give our logits") {
    const Case& c = s.cases.at("peft_qat");
    const auto ref = s.result("peft_qat");
    CHECK(max_diff(ref.at("logits"), c.logits) < 1e-4);
    // The base file holds the fake-quant lattice itself, in float32.
    const auto file = io::load_safetensors(s.cases.at("peft_qat_base").report.out);
    int exact = 0;
    for (const auto& l : exporting::collect_linears(*c.model)) {
      if (!l.fake_quant) continue;
      CAPTURE(l.name);
      CHECK(test::bit_equal(file.at(l.name + ".weight"), l.fake_quant->effective_weight()));
      ++exact;
    }
    CHECK(exact == 14);
  }

  SECTION("bitsandbytes NF4: transformers loads it and every dequantized weight equals ours") {
    const Case& c = s.cases.at("bnb");
    const auto ref = s.result("bnb");
    int checked = 0;
    for (const auto& l : exporting::collect_linears(*c.model)) {
      if (l.name == "lm_head") continue;
      CAPTURE(l.name);
      at::Tensor ours;
      if (l.nf4 && !l.lora) {
        ours = l.nf4->weight().dequantize(at::kFloat);  // the QLoRA base as it is
      } else {
        ours = nf4::NF4Tensor::quantize(l.merged_weight()).dequantize(at::kFloat);
      }
      REQUIRE(ref.count("w/" + l.name));
      CHECK(test::bit_equal(ref.at("w/" + l.name), ours));
      const int64_t same = ref.at("state_equal/" + l.name).item<int64_t>();
      CHECK(same == 1);  // the quant_state JSON is byte-identical to bitsandbytes' own
      ++checked;
    }
    CHECK(checked == 14);
  }

  SECTION(
      "compressed-tensors int4: unpacked per the spec and by compressed-tensors, equal to ours") {
    const Case& c = s.cases.at("ct");
    const auto ref = s.result("ct");
    const bool have_lib = s.result_json("ct")["compressed_tensors"].get<bool>();
    if (!have_lib)
      WARN(
          "compressed-tensors is not installed (pip install compressed-tensors==0.20.0): "
          "checked against the spec's unpacking only");
    auto g64 = scheme::QuantSpec::from_name("int4").with(scheme::Granularity::per_group(64));
    g64.scale_dtype = scheme::ScaleDtype::kFloat16;
    int exact = 0;
    for (const auto& l : exporting::collect_linears(*c.model)) {
      if (l.name == "lm_head") continue;
      CAPTURE(l.name);
      at::Tensor ours;
      if (l.fake_quant) {
        ours = l.fake_quant->effective_weight();  // the trained weight, exactly
        ++exact;
      } else {
        ours = ops::fake_quantize_dynamic(l.merged_weight(), g64, false).y;
      }
      CHECK(test::bit_equal(ref.at("own/" + l.name), ours));
      if (have_lib) CHECK(test::bit_equal(ref.at("lib/" + l.name), ours));
    }
    CHECK(exact == 8);
  }
  SECTION(
      "compressed-tensors 8-bit (w8a16, w8a8, fp8): compressed-tensors decompresses our weights "
      "bit for bit") {
    for (const std::string name : {"ct_w8a16", "ct_w8a8", "ct_fp8"}) {
      CAPTURE(name);
      const Case& c = s.cases.at(name);
      const auto ref = s.result(name);
      const auto info = s.result_json(name);
      CHECK(info["format"] == (name == "ct_w8a16"  ? "pack-quantized"
                               : name == "ct_w8a8" ? "int-quantized"
                                                   : "float-quantized"));
      int exact = 0, quantized = 0;
      for (const auto& l : exporting::collect_linears(*c.model)) {
        if (l.name == "lm_head") continue;
        CAPTURE(l.name);
        REQUIRE(ref.count("lib/" + l.name));
        if (l.fake_quant) {  // the trained weight, exactly
          CHECK(test::bit_equal(ref.at("lib/" + l.name), l.fake_quant->effective_weight()));
          ++exact;
        } else {  // dense: within half a step of the per-channel grid
          const at::Tensor w = l.merged_weight();
          const at::Tensor step = w.abs().amax(1, true) /
                                  (name == "ct_fp8" ? 448.0 / 32 : 127.0);  // e4m3: ulp 32 at 448
          CHECK(((ref.at("lib/" + l.name) - w).abs() <= step).all().item<bool>());
          ++quantized;
        }
        CHECK(test::bit_equal(ref.at("own/" + l.name), ref.at("lib/" + l.name)));
      }
      CHECK(exact == 8);  // 2 layers x 4 attention projections
      CHECK(quantized == 6);
      // transformers' compressed-tensors loader reads every file. For w8a16 its logits equal ours
      // computed with the file's weights (the dense MLP given the values the file holds); the
      // 8-bit-activation schemes are compared in vLLM (scripts/check-vllm), since transformers'
      // CPU emulation quantizes activations by compressed-tensors' own observer (max / 127.5).
      INFO(info["why"].get<std::string>());
      REQUIRE(info["loaded"].get<bool>());
      if (name != "ct_w8a16") continue;
      {
        torch::NoGradGuard no_grad;
        for (const auto& l : exporting::collect_linears(*c.model))
          if (!l.fake_quant && l.name != "lm_head")
            std::dynamic_pointer_cast<nn::Linear>(l.base)->weight().copy_(ref.at("lib/" + l.name));
      }
      const double diff = max_diff(ref.at("logits"), test::logits_of(*c.model, s.ids));
      CAPTURE(diff);
      CHECK(diff < 1e-4);  // float32 on both sides; summation order
    }
  }
  SECTION(
      "bitsandbytes 8-bit: transformers reads our codes and SCB, which equal its own quantization "
      "of the float model byte for byte, and trained int8 codes as they are") {
    {
      const Case& c = s.cases.at("bnb8_dense");
      const auto ref = s.result("bnb8_dense");
      int checked = 0;
      for (const auto& l : exporting::collect_linears(*c.model)) {
        if (l.name == "lm_head") continue;
        CAPTURE(l.name);
        REQUIRE(ref.count("cb/" + l.name));
        REQUIRE(ref.count("ref_cb/" + l.name));
        CHECK(at::equal(ref.at("cb/" + l.name), ref.at("ref_cb/" + l.name)));
        CHECK(test::bit_equal(ref.at("scb/" + l.name), ref.at("ref_scb/" + l.name)));
        ++checked;
      }
      CHECK(checked == 14);
      // The same weights through the same engine: the same logits, bit for bit.
      CHECK(test::bit_equal(ref.at("logits"), ref.at("ref_logits")));
    }
    const Case& c = s.cases.at("bnb8_qat");
    const auto ref = s.result("bnb8_qat");
    const float inv127 = static_cast<float>(1.0 / 127.0);
    int64_t rows = 0, exact_rows = 0;
    int trained = 0;
    for (const auto& l : exporting::collect_linears(*c.model)) {
      if (!l.fake_quant) continue;
      CAPTURE(l.name);
      const exporting::FakeQuantWeight fw = exporting::fake_quant_weight(*l.fake_quant);
      REQUIRE(ref.count("cb/" + l.name));
      CHECK(at::equal(ref.at("cb/" + l.name), fw.codes.view(at::kChar)));
      // bitsandbytes' dequantization (MatMul8bitFp): code * fl(SCB * fl(1/127)), against the
      // trained values, row by row.
      const at::Tensor step = ref.at("scb/" + l.name) * inv127;
      const at::Tensor deq = ref.at("cb/" + l.name).to(at::kFloat) * step.unsqueeze(1);
      const at::Tensor trained_values = fw.values();
      const at::Tensor same_row = (deq == trained_values).all(1);
      rows += same_row.numel();
      exact_rows += same_row.sum().item<int64_t>();
      const at::Tensor scale = fw.qparams.scale.reshape({-1});
      CHECK(((step - scale).abs() <= scale * 1.2e-7).all().item<bool>());  // 1 ulp at most
      ++trained;
    }
    CHECK(trained == 8);
    WARN("bnb-int8: " << exact_rows << " of " << rows
                      << " trained int8 rows dequantize in bitsandbytes to the trained values bit "
                         "for bit");
    CHECK(exact_rows >= rows * 95 / 100);
    // bitsandbytes' inference quantizes activations to int8 per token (outlier columns in 16
    // bits); our model runs the trained weights on float activations.
    const double diff = max_diff(ref.at("logits"), c.logits);
    const double scale = c.logits.abs().max().item<double>();
    CAPTURE(diff, scale);
    CHECK(diff < 0.05 * scale);
  }
}
