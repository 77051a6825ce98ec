// llama.cpp's quantization mixtures: the ggml type llama-quantize gives each tensor of a llama-
// architecture model (src/llama-quant.cpp, llama_tensor_get_type, no importance matrix), so a QAT
// run can train every layer in the very type the deployed file holds, and a dense export can
// reproduce llama-quantize's file. Two mixtures so far, the most used GGUF types: Q4_K_M, Q5_K_M.
//
// Q4_K_M (Q5_K_M): Q4_K (Q5_K) everywhere, except attn_v and ffn_down in the layers
// use_more_bits() picks (the first and last eighth, and every third layer between) and the output
// tensor (or a tied token_embd), which get Q6_K. Rows that are not whole 256-element super-blocks
// fall back as llama-quantize does: Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, and the output
// straight to Q8_0. (Not reproduced: its special cases for MoE, Falcon and 70B models.)
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "qat/io/gguf.h"

namespace qat::io {

// The type llama-quantize writes instead of a k-quant for rows that are not whole 256-element
// super-blocks: Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0 (other types are returned as they are).
GgmlType kquant_fallback(GgmlType t);

// "q4_k_m" / "gguf_q4_k_m" / "Q5_K_M" (any case) -> the mixture's name ("q4_k_m", "q5_k_m");
// nullopt for anything else.
std::optional<std::string> llama_mix_from_name(const std::string& name);

// The mixtures' names, for help texts and errors: "q4_k_m, q5_k_m".
std::string known_llama_mixes();

// The type of GGUF tensor `gguf_name` ("blk.3.attn_v.weight", "output.weight", ...) with rows of
// `row_elems` elements, in a model of `n_layers` blocks. `tied`: the model has no output tensor
// (token_embd serves as the output).
GgmlType llama_mix_type(const std::string& mix, const std::string& gguf_name, int64_t n_layers,
                        int64_t row_elems, bool tied);

// llama_ftype of a mixture (general.file_type): Q4_K_M = 15, Q5_K_M = 17.
uint32_t llama_mix_file_type(const std::string& mix);
// The k-quant most tensors of a mixture get (Q4_K for q4_k_m): what a recipe names the run by.
GgmlType llama_mix_base_type(const std::string& mix);

}  // namespace qat::io
