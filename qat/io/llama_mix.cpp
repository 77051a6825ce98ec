#include "qat/io/llama_mix.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "qat/io/gguf_blocks.h"

namespace qat::io {

namespace {

// The mixtures: the name llama-quantize takes (lower case), the k-quant most tensors get, and
// the llama_ftype written as general.file_type.
struct Mix {
  const char* name;
  GgmlType base;
  uint32_t file_type;
};
constexpr Mix kMixes[] = {{"q4_k_m", GgmlType::kQ4_K, 15}, {"q5_k_m", GgmlType::kQ5_K, 17}};

const Mix* find_mix(const std::string& name) {
  for (const Mix& m : kMixes) {
    if (name == m.name) return &m;
  }
  return nullptr;
}

const Mix& mix_or_throw(const std::string& name) {
  const Mix* m = find_mix(name);
  TORCH_CHECK(m != nullptr, "unknown llama.cpp quantization mixture '", name,
              "' (known: ", known_llama_mixes(), ")");
  return *m;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// llama-quant.cpp's use_more_bits: the first and last eighth of the layers, and every third
// layer in between.
bool use_more_bits(int64_t i, int64_t n) {
  return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2;
}

}  // namespace

std::string known_llama_mixes() {
  std::string known;
  for (const Mix& m : kMixes) known += (known.empty() ? "" : ", ") + std::string(m.name);
  return known;
}

GgmlType kquant_fallback(GgmlType t) {
  const auto f = block_format(t);
  if (!f.has_value()) return t;
  return *block_type(scheme::traits(*f).gguf.row_fallback);  // the format itself if none
}

std::optional<std::string> llama_mix_from_name(const std::string& name) {
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return std::tolower(c); });
  if (n.rfind("gguf_", 0) == 0) n = n.substr(5);
  if (find_mix(n) == nullptr) return std::nullopt;
  return n;
}

GgmlType llama_mix_type(const std::string& mix, const std::string& gguf_name, int64_t n_layers,
                        int64_t row_elems, bool tied) {
  GgmlType type = mix_or_throw(mix).base;
  int layer = -1;
  if (gguf_name == "output.weight" || (tied && gguf_name == "token_embd.weight")) {
    type = GgmlType::kQ6_K;  // rows not of whole super-blocks: Q8_0, Q6_K's fallback
  } else if (std::sscanf(gguf_name.c_str(), "blk.%d.", &layer) == 1 &&
             (ends_with(gguf_name, ".attn_v.weight") || ends_with(gguf_name, ".ffn_down.weight")) &&
             use_more_bits(layer, n_layers)) {
    type = GgmlType::kQ6_K;
  }
  return row_elems % 256 != 0 ? kquant_fallback(type) : type;
}

uint32_t llama_mix_file_type(const std::string& mix) {
  return mix_or_throw(mix).file_type;
}

GgmlType llama_mix_base_type(const std::string& mix) {
  return mix_or_throw(mix).base;
}

}  // namespace qat::io
