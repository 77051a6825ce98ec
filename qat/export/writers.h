// The per-format writers behind export_model() and the pieces they share (config.json, tokenizer
// files, tensor records). Internal to qat_export: users call export_model().
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "qat/export/export.h"
#include "qat/export/linears.h"

namespace qat::exporting::detail {

// Everything a writer needs: the model's linears classified once, its other tensors, the options
// and the report to fill (tensors written, notes).
struct Job {
  const ExportSource& source;
  const ExportOptions& opt;
  models::LlamaForCausalLM& model;
  std::vector<LinearView> linears;
  std::map<std::string, at::Tensor> others;  // embeddings, norms (HF names)
  ExportReport& report;
};

// `path` is where the writer puts its output (a temporary name export_model() renames).
void write_gguf(Job& job, const std::string& path);
void write_gguf_lora(Job& job, const std::string& path);
void write_hf_merged(Job& job, const std::string& dir);
void write_peft(Job& job, const std::string& dir);
void write_bnb_nf4(Job& job, const std::string& dir);
void write_bnb_int8(Job& job, const std::string& dir);                 // LLM.int8
void write_compressed_tensors(Job& job, const std::string& dir);       // w4a16
void write_compressed_tensors_8bit(Job& job, const std::string& dir);  // w8a16, w8a8, fp8

// README.md: the model card of an HF export (base model, method, format, fidelity, how to run it).
void write_model_card(const Job& job, const std::string& dir);

// ---- shared pieces ---------------------------------------------------------------------------

void write_text(const std::string& path, const std::string& text);
void write_json(const std::string& path, const nlohmann::json& j);
// "bfloat16", "float16", "float32" (transformers' dtype names).
std::string hf_dtype_name(at::ScalarType t);
// The scale dtype a checkpoint of dtype `t` stores its scales in (fp16, bf16, else fp32).
scheme::ScaleDtype scale_dtype_of(at::ScalarType t);
// One scale per row of a weight [N, K] (per axis 0 or -2; per token is the same for a weight).
bool per_output_channel(const scheme::Granularity& g);
// config.json's quantization_config of a bitsandbytes checkpoint, as transformers writes it:
// load_in_4bit (NF4, with or without double quant) or load_in_8bit (LLM.int8).
nlohmann::json bnb_quantization_config(bool four_bit, bool double_quant, at::ScalarType dt);
// config.json from the model config, with `dtype` and, when given, a quantization_config.
void write_hf_config(const std::string& dir, const models::LlamaConfig& cfg, at::ScalarType dtype,
                     const nlohmann::json& quantization_config = nullptr);
// tokenizer.json, tokenizer_config.json (and chat template) for an HF directory: copied from an
// HF source, converted from GGUF tokenizer metadata otherwise. Throws when the source has none.
void write_hf_tokenizer(const std::string& dir, const TokenizerSource& tok,
                        const models::LlamaConfig& cfg);
// A dense tensor record (bits = element size).
TensorRecord dense_record(const std::string& name, const at::Tensor& t, const std::string& origin);

// Tensors an HF writer saves, in order.
using TensorList = std::vector<std::pair<std::string, at::Tensor>>;
// `t` converted to `dtype` (contiguous), appended to `out` and recorded in the report as dense.
void add_dense(Job& job, TensorList& out, const std::string& name, const at::Tensor& t,
               at::ScalarType dtype, const std::string& origin);
// The model's other tensors (embeddings, norms) in `dtype`, each recorded as dense.
void add_others(Job& job, TensorList& out, at::ScalarType dtype);

// compressed-tensors' pack_to_int32: int8 codes [N, K] (two's complement, `bits` wide) as
// int32 [N, K * bits / 32], code + 2^(bits-1), the first element in the lowest bits. bits 4 or 8.
at::Tensor pack_int32(const at::Tensor& codes, int bits);
// The tensors (sharded safetensors), config.json with `quantization_config` (dtype --dtype) and the
// tokenizer files of a quantized HF export.
void write_hf_quantized(Job& job, const std::string& dir, const TensorList& tensors,
                        const nlohmann::json& quantization_config);

}  // namespace qat::exporting::detail
