// Byte-level BPE against HF tokenizers: SmolLM2's real vocabulary (from tokenizer.json and from
// the GGUF arrays) and small trained tokenizers that exercise the Split pre-tokenizer paths.
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "data/tokenizer/bpe_tokenizer.h"
#include "data/tokenizer/gguf_tokenizer.h"
#include "data/tokenizer/utf8.h"
#include "tests/data/tokenizer/ref_data.h"

using qat::data::Tokenizer;
using qat::test::read_json;
using qat::test::tokenizer_ref_dir;

namespace {

qat::data::GgufTokenizerData gguf_data(const nlohmann::json& g) {
  qat::data::GgufTokenizerData d;
  d.model = g.at("model").get<std::string>();
  d.pre = g.at("pre").get<std::string>();
  d.tokens = g.at("tokens").get<std::vector<std::string>>();
  d.token_types = g.at("token_type").get<std::vector<int32_t>>();
  d.merges = g.at("merges").get<std::vector<std::string>>();
  d.bos_id = g.at("bos_id").get<int32_t>();
  d.eos_id = g.at("eos_id").get<int32_t>();
  d.unk_id = g.at("unk_id").get<int32_t>();
  d.pad_id = g.at("pad_id").get<int32_t>();
  d.add_bos = g.at("add_bos").get<bool>();
  return d;
}

// Every corpus text: ids with and without special-token post-processing, and both decodes.
void check_against_hf(const Tokenizer& tok, const nlohmann::json& expected,
                      const std::string& name) {
  const auto& corpus = expected.at("corpus");
  const auto& c = expected.at("cases").at(name);
  for (size_t i = 0; i < corpus.size(); ++i) {
    const std::string text = corpus[i].get<std::string>();
    CAPTURE(name, i, text);
    const auto ids = tok.encode(text, false);
    CHECK(ids == c.at("ids")[i].get<std::vector<int32_t>>());
    CHECK(tok.encode(text, true) == c.at("ids_special")[i].get<std::vector<int32_t>>());
    CHECK(tok.decode(ids, false) == c.at("decoded")[i].get<std::string>());
    CHECK(tok.decode(ids, true) == c.at("decoded_skip")[i].get<std::string>());
  }
}

}  // namespace

TEST_CASE("BPE from SmolLM2's tokenizer.json gives HF tokenizers' ids on the corpus",
          "[tokenizer][bpe]") {
  const std::string dir = tokenizer_ref_dir("bpe");
  const auto expected = read_json(dir + "/expected.json");
  const std::string variant = GENERATE(as<std::string>{}, "smollm", "smollm_string_merges");
  const auto tok = qat::data::load_tokenizer(dir + "/" + variant + "/tokenizer.json");
  CHECK(tok->vocab_size() == 49152);
  CHECK(tok->token_to_id("<|im_start|>") == 1);
  CHECK(tok->is_special(2));
  CHECK_FALSE(tok->is_special(300));
  check_against_hf(*tok, expected, "smollm");
}

TEST_CASE("BPE from SmolLM2's GGUF metadata gives HF tokenizers' ids on the corpus",
          "[tokenizer][bpe][gguf]") {
  const std::string dir = tokenizer_ref_dir("bpe");
  const auto expected = read_json(dir + "/expected.json");
  const auto g = read_json(dir + "/gguf_vocab.json");
  const auto tok = qat::data::tokenizer_from_gguf(gguf_data(g));
  CHECK(tok->vocab_size() == 49152);
  CHECK(tok->bos_id() == 1);
  CHECK(tok->eos_id() == 2);
  CHECK(tok->pad_id() == 2);
  check_against_hf(*tok, expected, "smollm");
}

TEST_CASE("Split pre-tokenizers (Llama-3 regex, every behaviour, invert) match HF tokenizers",
          "[tokenizer][bpe]") {
  const std::string dir = tokenizer_ref_dir("bpe");
  const auto expected = read_json(dir + "/expected.json");
  const std::string variant =
      GENERATE(as<std::string>{}, "llama3_split", "prefix_space", "merged_previous", "merged_next",
               "contiguous_digits", "removed_invert");
  const auto tok = qat::data::load_tokenizer(dir + "/" + variant + "/tokenizer.json");
  check_against_hf(*tok, expected, variant);
  if (variant == "llama3_split") CHECK(tok->bos_id() == tok->token_to_id("<|begin_of_text|>"));
}

TEST_CASE("decode(encode(x)) == x on the corpus", "[tokenizer][bpe]") {
  const std::string dir = tokenizer_ref_dir("bpe");
  const auto expected = read_json(dir + "/expected.json");
  const auto tok = qat::data::load_tokenizer(dir + "/smollm/tokenizer.json");
  for (const auto& t : expected.at("corpus")) {
    const std::string text = t.get<std::string>();
    CAPTURE(text);
    CHECK(tok->decode(tok->encode(text, true), false) == text);
    CHECK(tok->decode(tok->encode(text, false, false), false) == text);
  }
}

TEST_CASE("Streaming decode yields decode()'s text in whole UTF-8 characters", "[tokenizer][bpe]") {
  const std::string dir = tokenizer_ref_dir("bpe");
  const auto expected = read_json(dir + "/expected.json");
  const auto tok = qat::data::load_tokenizer(dir + "/smollm/tokenizer.json");
  for (const auto& t : expected.at("corpus")) {
    const std::string text = t.get<std::string>();
    CAPTURE(text);
    const auto ids = tok->encode(text, false);
    qat::data::StreamingDecoder stream(*tok, /*skip_special=*/false);
    std::string joined;
    for (int32_t id : ids) {
      const std::string piece = stream.push(id);
      CHECK(qat::data::first_invalid_utf8(piece) == std::string::npos);
      joined += piece;
    }
    joined += stream.finish();
    CHECK(joined == text);
  }
}

TEST_CASE("parse_special=false encodes special-token text as ordinary text", "[tokenizer][bpe]") {
  const std::string dir = tokenizer_ref_dir("bpe");
  const auto tok = qat::data::load_tokenizer(dir + "/smollm/tokenizer.json");
  const std::string text = "<|im_start|>user";
  const auto parsed = tok->encode(text, false, true);
  const auto plain = tok->encode(text, false, false);
  REQUIRE(parsed.size() >= 2);
  CHECK(parsed[0] == 1);
  for (int32_t id : plain) CHECK_FALSE(tok->is_special(id));
  CHECK(tok->decode(plain) == text);
}

// transformers converts a GGUF "gpt2" vocabulary with a plain ByteLevel pre-tokenizer whatever
// tokenizer.ggml.pre says, i.e. it drops SmolLM2's Digits step (which HF's own SmolLM2
// tokenizer.json and llama.cpp's "smollm" both apply; they differ on non-ASCII digits such as
// "١٢٣"). So this compares our "gpt-2" mapping with it.
TEST_CASE("BPE from GGUF with pre 'gpt-2' equals transformers' GGUF tokenizer conversion",
          "[tokenizer][bpe][gguf][slow]") {
  const std::string dir = tokenizer_ref_dir("transformers");
  const auto ref = read_json(dir + "/transformers.json");
  const auto g = read_json(tokenizer_ref_dir("bpe") + "/gguf_vocab.json");
  auto data = gguf_data(g);
  data.pre = "gpt-2";
  const auto tok = qat::data::tokenizer_from_gguf(data);
  const auto& corpus = ref.at("corpus");
  for (size_t i = 0; i < corpus.size(); ++i) {
    const std::string text = corpus[i].get<std::string>();
    CAPTURE(i, text);
    CHECK(tok->encode(text, false) == ref.at("ids")[i].get<std::vector<int32_t>>());
  }
}
