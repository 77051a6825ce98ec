// SentencePiece through libsentencepiece against the Python sentencepiece package, from a .model
// file and rebuilt from GGUF-style arrays (tokens, scores, token types).
#include <catch2/catch.hpp>

#include "data/tokenizer/gguf_tokenizer.h"
#include "data/tokenizer/sentencepiece_tokenizer.h"
#include "tests/data/tokenizer/ref_data.h"

TEST_CASE("SentencePiece .model gives Python sentencepiece's ids", "[tokenizer][spm]") {
  const std::string dir = qat::test::tokenizer_ref_dir("spm");
  const auto ref = qat::test::read_json(dir + "/spm_expected.json");
  const auto tok = qat::data::load_tokenizer(dir + "/spm.model");
  CHECK(tok->vocab_size() == ref.at("vocab_size").get<int32_t>());
  CHECK(tok->bos_id() == ref.at("bos_id").get<int32_t>());
  CHECK(tok->eos_id() == ref.at("eos_id").get<int32_t>());
  const auto& corpus = ref.at("corpus");
  for (size_t i = 0; i < corpus.size(); ++i) {
    const std::string text = corpus[i].get<std::string>();
    CAPTURE(i, text);
    const auto expected = ref.at("ids")[i].get<std::vector<int32_t>>();
    CHECK(tok->encode(text, false) == expected);
    auto with_bos = expected;
    with_bos.insert(with_bos.begin(), *tok->bos_id());
    CHECK(tok->encode(text, true) == with_bos);
    CHECK(tok->decode(expected) == ref.at("decoded")[i].get<std::string>());
  }
  CHECK(tok->decode({*tok->bos_id(), 100}, false).rfind("<s>", 0) == 0);
  CHECK(tok->decode({*tok->bos_id(), 100}, true).rfind("<s>", 0) == std::string::npos);
  CHECK_FALSE(tok->token_to_id("no-such-piece-anywhere").has_value());
}

TEST_CASE("SentencePiece rebuilt from GGUF llama arrays matches the .model",
          "[tokenizer][spm][gguf]") {
  const std::string dir = qat::test::tokenizer_ref_dir("spm");
  const auto ref = qat::test::read_json(dir + "/spm_expected.json");
  qat::data::GgufTokenizerData d;
  d.model = "llama";
  for (const auto& p : ref.at("pieces")) {
    d.tokens.push_back(p.at("piece").get<std::string>());
    d.scores.push_back(p.at("score").get<float>());
    d.token_types.push_back(p.at("type").get<int32_t>());
  }
  d.bos_id = ref.at("bos_id").get<int32_t>();
  d.eos_id = ref.at("eos_id").get<int32_t>();
  d.unk_id = ref.at("unk_id").get<int32_t>();
  d.add_bos = true;
  const auto tok = qat::data::tokenizer_from_gguf(d);
  const auto& corpus = ref.at("corpus");
  for (size_t i = 0; i < corpus.size(); ++i) {
    const std::string text = corpus[i].get<std::string>();
    CAPTURE(i, text);
    auto expected = ref.at("ids")[i].get<std::vector<int32_t>>();
    CHECK(tok->decode(expected) == ref.at("decoded")[i].get<std::string>());
    expected.insert(expected.begin(), *d.bos_id);
    CHECK(tok->encode(text, true) == expected);
  }
  auto bad = d;
  bad.scores.pop_back();
  CHECK_THROWS_WITH(qat::data::tokenizer_from_gguf(bad),
                    Catch::Contains("tokenizer.ggml.scores has"));
}
