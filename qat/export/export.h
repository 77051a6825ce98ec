// Export: writes a trained (or pretrained) Llama-family model as a checkpoint that an inference
// engine loads -- GGUF for llama.cpp, Hugging Face safetensors (merged dense, PEFT adapter,
// bitsandbytes NF4) and int4 compressed-tensors for vLLM -- plus a manifest.json and a size report.
//
// The API takes an already-built model and the source's tokenizer, so a model trained in this
// process exports without a round trip through files; load_export_source() builds both from a
// path for the `qat export` command. Where a layer was trained with fake quant in a format the
// target stores exactly, the file holds our codes and scales and dequantizes to the trained
// weight bit for bit (docs/export.md lists which scheme maps onto which format).
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "qat/io/gguf.h"
#include "qat/lora/lora.h"
#include "qat/models/llama.h"
#include "qat/scheme/quant_spec.h"

namespace qat::exporting {

enum class ExportFormat {
  kGguf,               // llama.cpp GGUF v3
  kHfMerged,           // HF safetensors, dense (bf16 by default), LoRA folded in
  kPeft,               // PEFT LoRA adapter only (adapter_config.json + adapter_model.safetensors)
  kBnbNf4,             // HF safetensors with bitsandbytes NF4 (+ double quant) linears
  kCompressedTensors,  // HF safetensors for vLLM in compressed-tensors' formats
                       // (ExportOptions::ct_scheme)
  kGgufLora,           // llama.cpp LoRA adapter GGUF (general.type = adapter), for `--lora`
  kBnbInt8,            // HF safetensors with bitsandbytes 8-bit (LLM.int8) linears
};
// "gguf", "hf", "peft", "bnb-nf4", "bnb-int8", "ct" (also "compressed-tensors"), "gguf-lora";
// throws listing the names.
ExportFormat export_format_from_name(const std::string& name);
std::string to_string(ExportFormat f);
std::string known_export_formats();
// GGUF and GGUF adapters are one file; the HF formats are directories.
bool is_single_file(ExportFormat f);

// The compressed-tensors scheme of a `ct` export, by llm-compressor's preset names:
enum class CtScheme {
  kW4A16,  // int4 weights per group, "pack-quantized" (vLLM's WNA16 kernels)
  kW8A16,  // int8 weights per output channel, "pack-quantized" (4 codes per int32 word)
  kW8A8,   // int8 weights per channel + int8 activations per token, dynamic: "int-quantized"
  kFp8,    // fp8 e4m3 weights per channel + e4m3 activations per token, dynamic:
           // "float-quantized" (llm-compressor's FP8_DYNAMIC)
};
// "w4a16", "w8a16", "w8a8", "fp8" (also "fp8-dynamic"); throws listing them.
CtScheme ct_scheme_from_name(const std::string& name);
std::string to_string(CtScheme s);

// The source checkpoint's tokenizer, as the writers need it. One of the two is set (or neither,
// for a model without a tokenizer: GGUF and HF exports then refuse, PEFT does not need one).
struct TokenizerSource {
  std::string hf_dir;                    // an HF directory holding tokenizer.json (+ configs)
  std::optional<io::GgufMetadata> gguf;  // the tokenizer.* keys of a source GGUF
  std::string chat_template;             // Jinja source; empty when there is none
};

struct ExportSource {
  std::shared_ptr<models::LlamaForCausalLM> model;
  TokenizerSource tokenizer;
  std::string name;  // where it came from (path or run name): manifests, base_model_name_or_path
};

// Loads a .gguf file or an HF directory (float32 weights) with its tokenizer. (Trainer run
// directories are loaded by `qat export` in recipes/, which rebuilds the trained model from the
// run's config and checkpoint and takes the tokenizer from the base model with tokenizer_source.)
ExportSource load_export_source(const std::string& path);

// The tokenizer of a .gguf file or an HF directory, without loading weights.
TokenizerSource tokenizer_source(const std::string& path, const std::string& chat_template);

// What README.md (the model card of HF exports) says beyond the file itself.
struct ModelCard {
  std::string base_model;   // the model training started from ("" = the source)
  std::string method;       // e.g. "qat (fake quant gguf_q4_0, learnable scales)"
  nlohmann::json fidelity;  // train::FidelityReport::to_json() + reference/text; null: none
};

struct ExportOptions {
  ExportFormat format = ExportFormat::kGguf;
  std::string out;     // .gguf file for GGUF, a directory for the others
  bool force = false;  // replace an existing output

  // GGUF: the type of linears that are dense or LoRA (merged first), and of token_embd / output.
  // One of gguf_export_types() (k-quants fall back per tensor whose rows are not whole
  // 256-element super-blocks). Norms are always F32.
  io::GgmlType gguf_type = io::GgmlType::kQ8_0;
  io::GgmlType gguf_embed_type = io::GgmlType::kQ8_0;
  // A llama.cpp mixture ("q4_k_m", qat/io/llama_mix.h): each dense/LoRA linear, token_embd and
  // output get the type llama-quantize would give them (replaces gguf_type and gguf_embed_type).
  std::string gguf_mix;
  // A layer fake-quantized in a spec the target cannot store exactly is an error unless this is
  // set: then its effective weight is quantized again and the error is reported per tensor.
  bool requantize = false;

  // HF formats (hf, peft, bnb-nf4, bnb-int8, ct): README.md with these facts, the format and how to
  // run it.
  ModelCard card;

  // GGUF: also write an Ollama Modelfile beside the file (<out without .gguf>.Modelfile).
  bool ollama = false;

  // HF formats: dtype of dense tensors (bf16, fp16 or fp32) and the shard size.
  at::ScalarType hf_dtype = at::kBFloat16;
  uint64_t max_shard_bytes = uint64_t{5} << 30;

  // bnb-nf4: for layers that are not NF4 already (quantized from their merged weight).
  int64_t nf4_blocksize = 64;
  bool nf4_double_quant = true;

  // compressed-tensors: the scheme, and (w4a16) the group size for layers that are not int4
  // fake-quant already.
  CtScheme ct_scheme = CtScheme::kW4A16;
  int64_t int4_group_size = 128;

  // LoRA layers: false writes each base layer as it is (a fake-quant base as its trained codes, an
  // NF4 base dequantized) and leaves the adapters out, for a base that an adapter export (peft,
  // gguf-lora) goes on top of: the trained function fq(W) x + BA x, not a re-rounded merge.
  bool merge_lora = true;
  // gguf-lora: the type of lora_a / lora_b (F32, F16 or BF16).
  io::GgmlType gguf_adapter_type = io::GgmlType::kF32;

  // PEFT: what base_model_name_or_path says (default: the source name), and the adapters' config
  // when the caller has it (r, lora_alpha, use_rslora, dropout are then written as given; without
  // it lora_alpha = scaling * r, which gives PEFT the same scaling).
  std::string base_model_name_or_path;
  std::optional<lora::LoraConfig> lora_config;
};

// One tensor as written.
struct TensorRecord {
  std::string name;    // name in the file
  std::string type;    // "Q4_0", "BF16", "NF4", "int4/g32", ...
  std::string origin;  // "fake-quant (exact)", "quantized from dense", "requantized", "dense", ...
  int64_t numel = 0;
  int64_t bytes = 0;                               // bytes in the file (packed data, scales, ...)
  double theoretical_bits = 0;                     // bits per element the format costs in theory
  std::optional<double> max_abs_err, rel_fro_err;  // vs the model's weight, where we rounded
};

struct ExportReport {
  ExportFormat format = ExportFormat::kGguf;
  std::string out;
  std::vector<std::string> files;  // written, relative to out (or out itself for GGUF)
  int64_t file_bytes = 0;          // on disk, every file written
  int64_t tensor_bytes = 0;        // tensor payload (sum of TensorRecord::bytes)
  int64_t theoretical_bytes = 0;   // sum of numel * theoretical_bits / 8
  int64_t metadata_bytes = 0;  // file_bytes - tensor_bytes: headers, configs, tokenizer, padding
  std::vector<TensorRecord> tensors;
  std::vector<std::string> notes;  // things the user should know (e.g. activation quant dropped)
  nlohmann::json manifest;         // what manifest.json holds

  // A short table: size on disk vs theoretical, per-kind counts, the largest requantization errors.
  std::string summary() const;
};

// Writes `opt.out` (throws c10::Error with what to fix: unknown layer kinds, formats that cannot
// express the model's quantization, an existing output without force). Also writes manifest.json
// (beside the .gguf for GGUF: <out>.manifest.json).
ExportReport export_model(const ExportSource& source, const ExportOptions& opt);

// The types --gguf-type takes: every block type of io::kBlockFormats, f16, bf16 and f32.
std::vector<io::GgmlType> gguf_export_types();
// Their names as gguf_type_from_name takes them: "q8_0, q4_0, ..., f32".
std::string known_gguf_types();
// "q8_0" or "Q8_0" -> GgmlType::kQ8_0; throws naming the known types (gguf_export_types).
io::GgmlType gguf_type_from_name(const std::string& name);

// The version string written into manifests.
std::string tool_version();

}  // namespace qat::exporting
