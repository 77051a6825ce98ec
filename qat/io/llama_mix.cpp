#include "qat/io/llama_mix.h"

#include <c10/util/Exception.h>

#include <algorithm>
#include <cctype>
#include <cstdio>

namespace qat::io {

namespace {


bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// llama-quant.cpp's use_more_bits: the first and last eighth of the layers, and every third
// layer in between.
bool use_more_bits(int64_t i, int64_t n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

void check_mix(const std::string& mix) {
  TORCH_CHECK(mix == "q4_k_m" || mix == "q5_k_m", "unknown llama.cpp quantization mixture '", mix,
              "' (known: q4_k_m, q5_k_m)");
}

}  // namespace

GgmlType kquant_fallback(GgmlType t) {
  if (t == GgmlType::kQ4_K) return GgmlType::kQ5_0;
  if (t == GgmlType::kQ5_K) return GgmlType::kQ5_1;
  if (t == GgmlType::kQ6_K) return GgmlType::kQ8_0;
  return t;
}

std::optional<std::string> llama_mix_from_name(const std::string& name) {
  std::string n = name;
  std::transform(n.begin(), n.end(), n.begin(), [](unsigned char c) { return std::tolower(c); });
  if (n.rfind("gguf_", 0) == 0) n = n.substr(5);
  if (n == "q4_k_m" || n == "q5_k_m") return n;
  return std::nullopt;
}

GgmlType llama_mix_type(const std::string& mix, const std::string& gguf_name, int64_t n_layers,
                        int64_t row_elems, bool tied) {
  check_mix(mix);
  if (gguf_name == "output.weight" || (tied && gguf_name == "token_embd.weight")) {
    return row_elems % 256 != 0 ? GgmlType::kQ8_0 : GgmlType::kQ6_K;
  }
  GgmlType type = llama_mix_base_type(mix);
  int layer = -1;
  if (std::sscanf(gguf_name.c_str(), "blk.%d.", &layer) == 1 &&
      (ends_with(gguf_name, ".attn_v.weight") || ends_with(gguf_name, ".ffn_down.weight")) &&
      use_more_bits(layer, n_layers)) {
    type = GgmlType::kQ6_K;
  }
  return row_elems % 256 != 0 ? kquant_fallback(type) : type;
}

uint32_t llama_mix_file_type(const std::string& mix) {
  check_mix(mix);
  return mix == "q4_k_m" ? 15 : 17;  // LLAMA_FTYPE_MOSTLY_Q4_K_M, LLAMA_FTYPE_MOSTLY_Q5_K_M
}

GgmlType llama_mix_base_type(const std::string& mix) {
  check_mix(mix);
  return mix == "q4_k_m" ? GgmlType::kQ4_K : GgmlType::kQ5_K;
}

}  // namespace qat::io
