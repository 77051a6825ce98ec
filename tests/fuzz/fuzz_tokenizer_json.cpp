// libFuzzer target: the tokenizer.json loader (data/tokenizer/tokenizer_json.cpp) and, when a
// file loads, the byte-level BPE encode/decode path it builds (added tokens, pre-tokenizer
// regexes through PCRE2, merges, post-processor, decoder).
//
// Properties checked on every input: loading either succeeds or throws std::invalid_argument /
// std::runtime_error (the documented errors); a loaded tokenizer encodes a fixed text into ids
// inside [0, vocab_size()) or throws std::runtime_error (a PCRE2 match limit), and decodes its
// own ids without throwing.
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer/bpe_tokenizer.h"

namespace {

void require(bool ok) {
  if (!ok) __builtin_trap();
}

// Letters, digits, spaces, a contraction, non-ASCII and a typical special token.
constexpr std::string_view kText = "Hello  wörld's 12345\n\t<|im_start|>日本 👍🏽!";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::unique_ptr<qat::data::BpeTokenizer> tok;
  try {
    tok = qat::data::parse_bpe_tokenizer_json(
        std::string_view(reinterpret_cast<const char*>(data), size), "fuzz.json");
  } catch (const std::invalid_argument&) {
    return 0;
  } catch (const std::runtime_error&) {
    return 0;
  }
  for (bool add_special : {false, true}) {
    std::vector<int32_t> ids;
    try {
      ids = tok->encode(kText, add_special);
    } catch (const std::runtime_error&) {
      continue;
    }
    for (int32_t id : ids) require(id >= 0 && id < tok->vocab_size());
    (void)tok->decode(ids, false);
    (void)tok->decode(ids, true);
  }
  return 0;
}
