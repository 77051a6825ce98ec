// Shared by the dataset tests: files written into a fresh temp dir, and SmolLM2's real tokenizer
// and chat template (from the GGUF metadata that tests/ref/tokenizer_ref.py extracts).
#pragma once

#include <fstream>
#include <memory>
#include <string>

#include "data/tokenizer/chat_template.h"
#include "data/tokenizer/gguf_tokenizer.h"
#include "tests/data/tokenizer/ref_data.h"
#include "tests/support/helpers.h"

namespace qat::test {

// Writes `content` (bytes as given) to dir/name and returns the path.
inline std::string write_file(const std::string& dir, const std::string& name,
                              const std::string& content) {
  const std::string path = dir + "/" + name;
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream f(path, std::ios::binary);
  f << content;
  return path;
}

struct SmolLM2 {
  std::unique_ptr<qat::data::Tokenizer> tokenizer;
  std::unique_ptr<qat::data::ChatTemplate> chat_template;
};

// Loaded once per process.
inline const SmolLM2& smollm2() {
  static const SmolLM2 s = [] {
    const auto g = read_json(tokenizer_ref_dir("bpe") + "/gguf_vocab.json");
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
    SmolLM2 s;
    s.tokenizer = qat::data::tokenizer_from_gguf(d);
    s.chat_template =
        std::make_unique<qat::data::ChatTemplate>(g.at("chat_template").get<std::string>());
    return s;
  }();
  return s;
}

}  // namespace qat::test
