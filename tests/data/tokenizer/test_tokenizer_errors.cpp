// Malformed or unsupported tokenizer files and GGUF metadata give errors that name the field,
// and bad input to encode/decode is rejected rather than mis-tokenized.
#include <catch2/catch.hpp>
#include <fstream>

#include "data/tokenizer/bpe_tokenizer.h"
#include "data/tokenizer/gguf_tokenizer.h"
#include "tests/data/tokenizer/ref_data.h"

using Catch::Contains;
using nlohmann::json;
using qat::data::parse_bpe_tokenizer_json;

namespace {

// A valid byte-level BPE over "a", "b", "ab" and "Ġ" with one merge.
json tiny() {
  return json::parse(R"({
    "version": "1.0", "normalizer": null,
    "added_tokens": [{"id": 4, "content": "<eos>", "special": true}],
    "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
    "post_processor": null, "decoder": {"type": "ByteLevel"},
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3, "<eos>": 4},
              "merges": ["a b"]}})");
}

std::unique_ptr<qat::data::BpeTokenizer> load(const json& j) {
  return parse_bpe_tokenizer_json(j.dump(), "tiny.json");
}

}  // namespace

TEST_CASE("A tiny hand-written tokenizer.json encodes and decodes", "[tokenizer][errors]") {
  const auto tok = load(tiny());
  CHECK(tok->encode("ab ab<eos>", false) == std::vector<int32_t>{2, 3, 2, 4});
  CHECK(tok->decode({2, 3, 2, 4}) == "ab ab<eos>");
  CHECK(tok->decode({2, 3, 2, 4}, true) == "ab ab");
  CHECK(tok->encode("ba", false) == std::vector<int32_t>{1, 0});
  // Characters outside the vocab are dropped, as HF does without an unk token.
  CHECK(tok->encode("abc", false) == std::vector<int32_t>{2});
}

TEST_CASE("Malformed tokenizer.json files give errors naming the field", "[tokenizer][errors]") {
  SECTION("not JSON") {
    CHECK_THROWS_WITH(parse_bpe_tokenizer_json("{\"model\": ", "bad.json"),
                      Contains("bad.json: not valid JSON"));
  }
  SECTION("missing model") {
    json j = tiny();
    j.erase("model");
    CHECK_THROWS_WITH(load(j), Contains("tiny.json: model: missing"));
  }
  SECTION("merge referencing an unknown token") {
    json j = tiny();
    j["model"]["merges"] = {"a b", "b zz"};
    CHECK_THROWS_WITH(load(j), Contains("model.merges[1]") && Contains("'zz' is not in the vocab"));
  }
  SECTION("merge whose result is not in the vocab") {
    json j = tiny();
    j["model"]["merges"] = json::array({json::array({"b", "a"})});
    CHECK_THROWS_WITH(load(j), Contains("merged token 'ba' is not in the vocab"));
  }
  SECTION("merge with the wrong shape") {
    json j = tiny();
    j["model"]["merges"] = {"a b c"};
    CHECK_THROWS_WITH(load(j), Contains("model.merges[0]: expected \"left right\""));
    j["model"]["merges"] = json::array({json::array({"a"})});
    CHECK_THROWS_WITH(load(j), Contains("model.merges[0]: expected a string"));
  }
  SECTION("bad regex") {
    json j = tiny();
    j["pre_tokenizer"] = json::parse(
        R"({"type": "Split", "pattern": {"Regex": "(unclosed"}, "behavior": "Isolated"})");
    CHECK_THROWS_WITH(
        load(j), Contains("pre_tokenizer.pattern.Regex") && Contains("invalid regex '(unclosed'"));
  }
  SECTION("wrong types") {
    json j = tiny();
    j["model"]["vocab"]["a"] = "zero";
    CHECK_THROWS_WITH(load(j), Contains("model.vocab['a']: expected a token id"));
    j = tiny();
    j["model"]["vocab"] = json::array();
    CHECK_THROWS_WITH(load(j), Contains("model.vocab: expected an object, found array"));
    j = tiny();
    j["added_tokens"][0]["special"] = "yes";
    CHECK_THROWS_WITH(load(j), Contains("added_tokens[0].special: expected a boolean"));
    j = tiny();
    j["pre_tokenizer"]["use_regex"] = 1;
    CHECK_THROWS_WITH(load(j), Contains("pre_tokenizer.use_regex: expected a boolean"));
  }
  SECTION("unsupported components are named") {
    json j = tiny();
    j["normalizer"] = {{"type", "NFC"}};
    CHECK_THROWS_WITH(load(j), Contains("normalizer 'NFC' is not supported"));
    j = tiny();
    j["model"]["type"] = "WordPiece";
    CHECK_THROWS_WITH(load(j), Contains("model 'WordPiece' is not supported"));
    j = tiny();
    j["pre_tokenizer"] = {{"type", "Whitespace"}};
    CHECK_THROWS_WITH(load(j), Contains("pre-tokenizer 'Whitespace' is not supported"));
    j = tiny();
    j["decoder"] = {{"type", "WordPiece"}};
    CHECK_THROWS_WITH(load(j), Contains("decoder 'WordPiece' is not supported"));
    j = tiny();
    j["post_processor"] = {{"type", "BertProcessing"}};
    CHECK_THROWS_WITH(load(j), Contains("post-processor 'BertProcessing' is not supported"));
    j = tiny();
    j["model"]["dropout"] = 0.1;
    CHECK_THROWS_WITH(load(j), Contains("BPE dropout"));
  }
  SECTION("template naming a special token it does not define") {
    json j = tiny();
    j["post_processor"] = json::parse(R"({"type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}},
                   {"Sequence": {"id": "A", "type_id": 0}}], "special_tokens": {}})");
    CHECK_THROWS_WITH(load(j), Contains("post_processor.special_tokens: no entry for '<bos>'"));
  }
  SECTION("deeply nested Sequence") {
    json pre = {{"type", "ByteLevel"}};
    for (int i = 0; i < 40; ++i) pre = {{"type", "Sequence"}, {"pretokenizers", {pre}}};
    json j = tiny();
    j["pre_tokenizer"] = pre;
    CHECK_THROWS_WITH(load(j), Contains("nested deeper than"));
  }
  SECTION("files") {
    CHECK_THROWS_WITH(qat::data::load_tokenizer("/nonexistent/tokenizer.json"),
                      Contains("does not exist"));
    const std::string dir = qat::test::temp_dir();
    std::ofstream(dir + "/vocab.txt") << "a\n";
    CHECK_THROWS_WITH(qat::data::load_tokenizer(dir + "/vocab.txt"),
                      Contains("expected a tokenizer"));
    CHECK_THROWS_WITH(qat::data::load_tokenizer(dir), Contains("neither tokenizer.json"));
  }
}

TEST_CASE("Invalid input to encode and decode is rejected", "[tokenizer][errors]") {
  const auto tok = load(tiny());
  CHECK_THROWS_WITH(tok->encode(std::string("ab\xC3(", 4)), Contains("not valid UTF-8 at byte 2"));
  CHECK_THROWS_WITH(tok->encode(std::string("\xED\xA0\x80", 3)), Contains("at byte 0"));
  CHECK_THROWS_AS(tok->decode({0, 99}), std::out_of_range);
  CHECK_THROWS_AS(tok->decode({-1}), std::out_of_range);
  CHECK_THROWS_AS(tok->id_to_token(1234), std::out_of_range);
}

TEST_CASE("GGUF tokenizer metadata errors name the key", "[tokenizer][errors][gguf]") {
  qat::data::GgufTokenizerData d;
  d.model = "gpt2";
  d.pre = "smollm";
  d.tokens = {"a", "b", "ab", "Ġ"};
  d.token_types = {1, 1, 1, 1};
  d.merges = {"a b"};
  CHECK(qat::data::tokenizer_from_gguf(d)->encode("ab", true) == std::vector<int32_t>{2});

  auto bad = d;
  bad.pre = "made-up";
  CHECK_THROWS_WITH(
      qat::data::tokenizer_from_gguf(bad),
      Contains("tokenizer.ggml.pre 'made-up' is not supported") && Contains("smollm"));
  bad = d;
  bad.pre.clear();
  CHECK_THROWS_WITH(qat::data::tokenizer_from_gguf(bad), Contains("tokenizer.ggml.pre is missing"));
  bad = d;
  bad.token_types = {1, 1};
  CHECK_THROWS_WITH(qat::data::tokenizer_from_gguf(bad),
                    Contains("token_type has 2 entries, expected 4"));
  bad = d;
  bad.bos_id = 7;
  CHECK_THROWS_WITH(qat::data::tokenizer_from_gguf(bad), Contains("bos_token_id = 7 is outside"));
  bad = d;
  bad.merges = {"ab"};
  CHECK_THROWS_WITH(qat::data::tokenizer_from_gguf(bad), Contains("tokenizer.ggml.merges[0]"));
  bad = d;
  bad.model = "bert";
  CHECK_THROWS_WITH(qat::data::tokenizer_from_gguf(bad), Contains("tokenizer.ggml.model 'bert'"));
  bad = d;
  bad.add_bos = true;
  CHECK_THROWS_WITH(qat::data::tokenizer_from_gguf(bad), Contains("bos_token_id is missing"));
  for (const char* pre : {"gpt-2", "llama-bpe", "llama3", "qwen2", "smollm"}) {
    CAPTURE(pre);
    CHECK_FALSE(qat::data::gguf_pre_regexes(pre).empty());
  }
}
