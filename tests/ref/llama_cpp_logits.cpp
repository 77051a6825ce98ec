// Logits of a GGUF model as llama.cpp computes them: the real engine, as a reference for
// export tests (tests/qat/export/test_export_llama_cpp.cpp). Built by scripts/check-llama-cpp
// against llama.cpp from the llama-cpp-python sdist; not part of the project build.
//
// usage: llama_cpp_logits MODEL.gguf TOKENS.i32 OUT.f32 [--lora ADAPTER.gguf] [--kv-f32]
//   TOKENS.i32: n int32 token ids; OUT.f32: n x n_vocab float32 logits, one row per position.
//   --lora: apply a LoRA adapter GGUF at scale 1 (as llama-cli --lora does);
//   --kv-f32: keep the KV cache in float32 (llama.cpp's default is f16).
#include <llama.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

int main(int argc, char** argv) {
  const char* lora_path = nullptr;
  bool kv_f32 = false;
  bool usage = argc < 4;
  for (int i = 4; i < argc && !usage; ++i) {
    if (std::strcmp(argv[i], "--lora") == 0 && i + 1 < argc) {
      lora_path = argv[++i];
    } else if (std::strcmp(argv[i], "--kv-f32") == 0) {
      kv_f32 = true;
    } else {
      usage = true;
    }
  }
  if (usage) {
    std::fprintf(stderr,
                 "usage: %s MODEL.gguf TOKENS.i32 OUT.f32 [--lora ADAPTER.gguf] [--kv-f32]\n",
                 argv[0]);
    return 2;
  }
  std::ifstream in(argv[2], std::ios::binary);
  const std::vector<char> bytes((std::istreambuf_iterator<char>(in)), {});
  std::vector<llama_token> tokens(bytes.size() / sizeof(llama_token));
  std::copy(bytes.begin(), bytes.end(), reinterpret_cast<char*>(tokens.data()));
  const auto n = static_cast<int32_t>(tokens.size());
  if (n == 0) {
    std::fprintf(stderr, "%s: no tokens in %s\n", argv[0], argv[2]);
    return 2;
  }

  llama_backend_init();
  llama_model_params mp = llama_model_default_params();
  llama_model* model = llama_model_load_from_file(argv[1], mp);
  if (!model) {
    std::fprintf(stderr, "%s: llama.cpp could not load %s\n", argv[0], argv[1]);
    return 1;
  }
  llama_context_params cp = llama_context_default_params();
  cp.n_ctx = static_cast<uint32_t>(n < 256 ? 256 : n);
  cp.n_batch = cp.n_ctx;
  cp.n_ubatch = cp.n_ctx;
  cp.n_threads = cp.n_threads_batch = 2;
  if (kv_f32) cp.type_k = cp.type_v = GGML_TYPE_F32;
  llama_context* ctx = llama_init_from_model(model, cp);
  if (!ctx) {
    std::fprintf(stderr, "%s: could not create a context\n", argv[0]);
    return 1;
  }
  if (lora_path) {
    llama_adapter_lora* adapter = llama_adapter_lora_init(model, lora_path);
    if (!adapter) {
      std::fprintf(stderr, "%s: llama.cpp could not load the adapter %s\n", argv[0], lora_path);
      return 1;
    }
    float scale = 1.0f;
    if (llama_set_adapters_lora(ctx, &adapter, 1, &scale) != 0) {
      std::fprintf(stderr, "%s: could not apply the adapter %s\n", argv[0], lora_path);
      return 1;
    }
  }
  // One sequence, logits at every position.
  llama_batch batch = llama_batch_init(n, 0, 1);
  for (int32_t i = 0; i < n; ++i) {
    batch.token[i] = tokens[i];
    batch.pos[i] = i;
    batch.n_seq_id[i] = 1;
    batch.seq_id[i][0] = 0;
    batch.logits[i] = 1;
  }
  batch.n_tokens = n;
  if (llama_decode(ctx, batch) != 0) {
    std::fprintf(stderr, "%s: llama_decode failed\n", argv[0]);
    return 1;
  }
  const int32_t n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));
  std::ofstream out(argv[3], std::ios::binary);
  for (int32_t i = 0; i < n; ++i) {
    out.write(reinterpret_cast<const char*>(llama_get_logits_ith(ctx, i)),
              static_cast<std::streamsize>(n_vocab) * sizeof(float));
  }
  llama_batch_free(batch);
  llama_free(ctx);
  llama_model_free(model);
  llama_backend_free();
  return out ? 0 : 1;
}
