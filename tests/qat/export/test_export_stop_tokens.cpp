// Stop tokens and chat templates end to end: every export carries the source tokenizer's special
// ids, its end-of-generation tokens and its chat template (GGUF keys, config.json,
// generation_config.json, tokenizer_config.json, the Ollama Modelfile), so the exported model
// stops where the source model stops.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "qat/export/tokenizer_convert.h"
#include "qat/io/gguf_file.h"
#include "tests/qat/export/export_models.h"
#include "tests/support/catch_torch.h"

namespace {

namespace fs = std::filesystem;
using namespace qat;
using exporting::ExportFormat;

nlohmann::json read_json(const fs::path& p) {
  std::ifstream f(p);
  REQUIRE(f);
  return nlohmann::json::parse(f);
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p);
  REQUIRE(f);
  return std::string((std::istreambuf_iterator<char>(f)), {});
}

exporting::ExportReport export_to(const std::shared_ptr<models::LlamaForCausalLM>& m,
                                  const exporting::TokenizerSource& tok, ExportFormat f,
                                  const std::string& out, exporting::ExportOptions o = {}) {
  exporting::ExportSource src;
  src.model = m;
  src.tokenizer = tok;
  src.name = "tiny";
  o.format = f;
  o.out = out;
  return exporting::export_model(src, o);
}

}  // namespace

TEST_CASE("Exports carry the source's stop tokens and chat template", "[export][tokenizer]") {
  const auto& tok = test::smollm_tokenizer();  // SmolLM2-135M-Instruct's GGUF tokenizer keys
  const io::GgufMetadata& src = *tok.gguf;
  const auto& tokens = src.get_string_array("tokenizer.ggml.tokens");
  const auto eos = static_cast<int64_t>(src.get_u32("tokenizer.ggml.eos_token_id"));
  const std::string tmpl = src.get_string("tokenizer.chat_template");

  // The end-of-generation tokens as llama.cpp's vocab loader finds them in this vocabulary:
  // eos first, then every token named like an end of turn / text.
  const exporting::StopTokens stop = exporting::stop_tokens(src);
  REQUIRE_FALSE(stop.eog.empty());
  CHECK(stop.eog.front() == eos);
  CHECK(stop.eog_text.front() == "<|im_end|>");
  std::set<std::string> texts(stop.eog_text.begin(), stop.eog_text.end());
  CHECK(texts == std::set<std::string>{"<|im_end|>", "<|endoftext|>"});
  for (size_t i = 0; i < stop.eog.size(); ++i)
    CHECK(tokens[static_cast<size_t>(stop.eog[i])] == stop.eog_text[i]);

  // A GGUF export's special ids and chat template equal the source's.
  auto check_gguf_keys = [&](const std::string& path) {
    const io::GgufFile f = io::GgufFile::open(path);
    for (const char* k : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                          "tokenizer.ggml.padding_token_id", "tokenizer.chat_template"}) {
      CAPTURE(path, k);
      REQUIRE(f.metadata().has(k));
      CHECK(f.metadata().at(k) == src.at(k));
    }
  };

  const std::string dir = test::temp_dir();
  models::LlamaConfig mc = test::export_config();  // the ids as the GGUF loader sets them
  mc.bos_token_id = src.get_u32("tokenizer.ggml.bos_token_id");
  mc.eos_token_id = eos;
  mc.pad_token_id = src.get_u32("tokenizer.ggml.padding_token_id");
  auto m = test::random_model(mc, 21);

  SECTION("GGUF: the source's special ids and template; the Modelfile stops on the same tokens") {
    exporting::ExportOptions o;
    o.ollama = true;
    const auto r = export_to(m, tok, ExportFormat::kGguf, dir + "/model.gguf", o);
    check_gguf_keys(dir + "/model.gguf");
    const std::string mf = read_text(dir + "/model.Modelfile");
    std::istringstream lines(mf);
    std::vector<std::string> froms, stops;
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind("FROM ", 0) == 0) froms.push_back(line.substr(5));
      if (line.rfind("PARAMETER stop ", 0) == 0)
        stops.push_back(nlohmann::json::parse(line.substr(15)).get<std::string>());
    }
    CHECK(froms == std::vector<std::string>{"./model.gguf"});
    CHECK(stops == stop.eog_text);
    CHECK(mf.find("TEMPLATE") == std::string::npos);  // Ollama uses the GGUF's chat template
    bool noted = false;
    for (const auto& n : r.notes) noted = noted || n.find("model.Modelfile") != std::string::npos;
    CHECK(noted);
    CHECK_THROWS_WITH(export_to(m, tok, ExportFormat::kHfMerged, dir + "/x", o),
                      Catch::Contains("--ollama") && Catch::Contains("--format gguf"));
  }

  SECTION("HF from a GGUF source: config, generation_config and tokenizer_config agree with it") {
    export_to(m, tok, ExportFormat::kHfMerged, dir + "/hf");
    const auto gen = read_json(dir + "/hf/generation_config.json");
    CHECK(gen["bos_token_id"] == src.get_u32("tokenizer.ggml.bos_token_id"));
    CHECK(gen["eos_token_id"] == nlohmann::json(stop.eog));
    CHECK(gen["pad_token_id"] == src.get_u32("tokenizer.ggml.padding_token_id"));
    const auto tc = read_json(dir + "/hf/tokenizer_config.json");
    CHECK(tc["chat_template"] == tmpl);
    CHECK(tc["eos_token"] == tokens[static_cast<size_t>(eos)]);

    SECTION("and back: HF -> GGUF keeps the ids and template, HF -> HF keeps the files") {
      exporting::TokenizerSource hf;
      hf.hf_dir = dir + "/hf";
      export_to(m, hf, ExportFormat::kGguf, dir + "/back.gguf");
      check_gguf_keys(dir + "/back.gguf");
      exporting::ExportOptions g32;
      g32.int4_group_size = 32;
      export_to(m, hf, ExportFormat::kCompressedTensors, dir + "/ct", g32);
      CHECK(read_text(dir + "/ct/generation_config.json") ==
            read_text(dir + "/hf/generation_config.json"));
      CHECK(read_json(dir + "/ct/tokenizer_config.json")["chat_template"] == tmpl);
      // An HF source without generation_config.json gets one from its tokenizer.
      fs::remove(dir + "/hf/generation_config.json");
      export_to(m, hf, ExportFormat::kHfMerged, dir + "/hf2");
      CHECK(read_json(dir + "/hf2/generation_config.json") == gen);
      // A tokenizer the GGUF conversion does not read (no tokenizer.json: SentencePiece,
      // byte_fallback BPE): the ids of config.json, and the export still succeeds.
      fs::remove(dir + "/hf/tokenizer.json");
      export_to(m, hf, ExportFormat::kHfMerged, dir + "/hf3");
      const auto fallback = read_json(dir + "/hf3/generation_config.json");
      CHECK(fallback["eos_token_id"] == eos);
      CHECK(fallback["bos_token_id"] == *mc.bos_token_id);
    }
  }

  SECTION("a tokenizer without a chat template: the Modelfile passes prompts through") {
    exporting::TokenizerSource plain = tok;
    plain.gguf->erase("tokenizer.chat_template");
    plain.chat_template.clear();
    exporting::ExportOptions o;
    o.ollama = true;
    export_to(m, plain, ExportFormat::kGguf, dir + "/plain.gguf", o);
    const std::string mf = read_text(dir + "/plain.Modelfile");
    CHECK(mf.find("TEMPLATE \"{{ .Prompt }}\"") != std::string::npos);
  }
}
