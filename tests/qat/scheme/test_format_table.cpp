// The formats table (qat/scheme/format.h) against the numbers of ggml and llama.cpp, and the
// tables derived from it (qat/io/gguf.cpp's type table, qat/io/gguf_blocks.h, the fallbacks of
// qat/io/llama_mix.h) against the table. The expected numbers are written out from ggml's
// sources (ggml.h, ggml-common.h, llama.h) here, and read from the `gguf` Python package in the
// [reference] case: neither comes from the code under test.
#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "qat/io/gguf.h"
#include "qat/io/gguf_blocks.h"
#include "qat/io/gguf_file.h"
#include "qat/io/llama_mix.h"
#include "qat/scheme/blocks.h"
#include "qat/scheme/quant_spec.h"
#include "tests/support/helpers.h"

namespace scheme = qat::scheme;
namespace io = qat::io;
using scheme::Format;

namespace {

// One GGUF block format as ggml and llama.cpp define it.
struct GgmlFacts {
  Format format;
  int type_id;       // ggml.h: GGML_TYPE_*
  const char* name;  // ggml's type name
  int block_size;    // ggml-common.h: QK4_0 = 32, QK_K = 256, ...
  int type_size;     // ggml-common.h: sizeof(block_q4_0), ...
  int llama_ftype;   // llama.h: LLAMA_FTYPE_MOSTLY_*
  const char* ftype_name;
  Format row_fallback;  // llama-quant.cpp: the type for rows that are not whole super-blocks
};
// clang-format off
const GgmlFacts kGgml[] = {
  {Format::kQ8_0, 8,  "Q8_0", 32,  34,  7,  "MOSTLY_Q8_0",   Format::kQ8_0},
  {Format::kQ4_0, 2,  "Q4_0", 32,  18,  2,  "MOSTLY_Q4_0",   Format::kQ4_0},
  {Format::kQ4_1, 3,  "Q4_1", 32,  20,  3,  "MOSTLY_Q4_1",   Format::kQ4_1},
  {Format::kQ5_0, 6,  "Q5_0", 32,  22,  8,  "MOSTLY_Q5_0",   Format::kQ5_0},
  {Format::kQ5_1, 7,  "Q5_1", 32,  24,  9,  "MOSTLY_Q5_1",   Format::kQ5_1},
  {Format::kQ4_K, 12, "Q4_K", 256, 144, 14, "MOSTLY_Q4_K_S", Format::kQ5_0},
  {Format::kQ5_K, 13, "Q5_K", 256, 176, 16, "MOSTLY_Q5_K_S", Format::kQ5_1},
  {Format::kQ6_K, 14, "Q6_K", 256, 210, 18, "MOSTLY_Q6_K",   Format::kQ8_0},
};
// clang-format on

const GgmlFacts* ggml_facts(Format f) {
  for (const GgmlFacts& g : kGgml) {
    if (g.format == f) return &g;
  }
  return nullptr;
}

std::string format_name(Format f) {
  return std::string(scheme::traits(f).name);
}

}  // namespace

TEST_CASE("every GGUF block format's row holds ggml's type id, name, block size and bytes",
          "[scheme][formats][gguf]") {
  int block_formats = 0;
  for (int i = 0; i < scheme::kNumFormats; ++i) {
    const Format f = static_cast<Format>(i);
    const scheme::FormatTraits& t = scheme::traits(f);
    CAPTURE(format_name(f));
    CHECK(t.format == f);
    const GgmlFacts* g = ggml_facts(f);
    if (g == nullptr) {
      CHECK(t.gguf.type == -1);
      CHECK(t.block_bytes == 0);
      CHECK(t.fixed_block == 0);
      CHECK(scheme::block_struct_bytes(f) == 0);
      CHECK_FALSE(io::block_type(f).has_value());
      continue;
    }
    ++block_formats;
    CHECK(t.gguf.type == g->type_id);
    CHECK(t.gguf.name == g->name);
    CHECK(t.fixed_block == g->block_size);
    CHECK(t.block_bytes == g->type_size);
    CHECK(scheme::block_struct_bytes(f) == g->type_size);
    CHECK(t.gguf.llama_ftype == g->llama_ftype);
    CHECK(t.gguf.row_fallback == g->row_fallback);
    CHECK(t.scale_dtype == scheme::ScaleDtype::kFloat16);
    CHECK(t.fixed_scale_dtype);
  }
  CHECK(block_formats == static_cast<int>(sizeof(kGgml) / sizeof(kGgml[0])));
}

TEST_CASE("bits per weight of the block formats are ggml's", "[scheme][formats][gguf]") {
  // ggml's bits per weight: bytes per block * 8 / elements per block.
  const std::map<Format, double> expected = {
      {Format::kQ8_0, 8.5}, {Format::kQ4_0, 4.5}, {Format::kQ4_1, 5.0}, {Format::kQ5_0, 5.5},
      {Format::kQ5_1, 6.0}, {Format::kQ4_K, 4.5}, {Format::kQ5_K, 5.5}, {Format::kQ6_K, 6.5625},
  };
  for (const auto& [f, bpw] : expected) {
    CAPTURE(format_name(f));
    const scheme::FormatTraits& t = scheme::traits(f);
    CHECK(8.0 * t.block_bytes / t.fixed_block == bpw);
    // The GGUF reader's table (qat/io/gguf.cpp) gives the same bytes for the type.
    const io::GgmlTypeTraits* gt = io::ggml_type_traits(static_cast<uint32_t>(t.gguf.type));
    REQUIRE(gt != nullptr);
    CHECK(8.0 * gt->type_size / gt->block_size == bpw);
    CHECK(io::ggml_nbytes(*io::block_type(f), {t.fixed_block * 3, 2}, "test") ==
          static_cast<uint64_t>(6 * t.block_bytes));
  }
}

TEST_CASE("format names and GGUF types round-trip through every table", "[scheme][formats][gguf]") {
  for (int i = 0; i < scheme::kNumFormats; ++i) {
    const Format f = static_cast<Format>(i);
    const scheme::FormatTraits& t = scheme::traits(f);
    CAPTURE(format_name(f));
    // Config name -> format (int and uint take their bits in the name).
    const std::string config_name =
        f == Format::kInt || f == Format::kUInt ? format_name(f) + "4" : format_name(f);
    CHECK(scheme::QuantSpec::from_name(config_name).format == f);
    if (t.gguf.type < 0) continue;
    const io::GgmlType type = static_cast<io::GgmlType>(t.gguf.type);
    // format -> ggml type -> format, through gguf_blocks.h and the reader's spec.
    CHECK(io::block_type(f) == type);
    CHECK(io::block_format(type) == f);
    CHECK(io::gguf_block_spec(type).format == f);
    CHECK(io::is_kquant_type(type) == scheme::is_kquant(f));
    // ggml's name, as the reader's type table prints it.
    CHECK(io::ggml_type_name(type) == t.gguf.name);
    const io::GgmlTypeTraits* gt = io::ggml_type_traits(static_cast<uint32_t>(t.gguf.type));
    REQUIRE(gt != nullptr);
    CHECK(gt->name == t.gguf.name);
    CHECK(gt->block_size == t.fixed_block);
    CHECK(gt->type_size == t.block_bytes);
    // The fallback of llama-quantize, as export and the mixtures apply it.
    CHECK(io::kquant_fallback(type) == *io::block_type(t.gguf.row_fallback));
  }
  // Every entry of kBlockFormats is a format's row, in Format order.
  int last = -1;
  for (const io::BlockFormat& b : io::kBlockFormats) {
    CHECK(static_cast<int>(b.format) > last);
    last = static_cast<int>(b.format);
    CHECK(scheme::traits(b.format).gguf.type == static_cast<int>(b.type));
  }
  CHECK(io::kBlockFormats.size() == sizeof(kGgml) / sizeof(kGgml[0]));
  // Types no format stores have no format.
  CHECK_FALSE(io::block_format(io::GgmlType::kF32).has_value());
  CHECK_FALSE(io::block_format(io::GgmlType::kQ2_K).has_value());
  CHECK(io::kquant_fallback(io::GgmlType::kF16) == io::GgmlType::kF16);
}

TEST_CASE("each format's code range holds 2^bits codes, int and uint at every width",
          "[scheme][formats]") {
  for (int i = 0; i < scheme::kNumFormats; ++i) {
    const Format f = static_cast<Format>(i);
    const scheme::FormatTraits& t = scheme::traits(f);
    for (int bits = t.min_bits; bits <= t.max_bits; ++bits) {
      CAPTURE(format_name(f), bits);
      const scheme::CodeRange r = scheme::code_range(f, bits);
      CHECK(r.qmax - r.qmin + 1 == 1 << bits);
    }
  }
  CHECK(scheme::code_range(Format::kInt, 3).qmin == -4);
  CHECK(scheme::code_range(Format::kUInt, 3).qmax == 7);
  CHECK(scheme::code_range(Format::kQ6_K, 6).qmin == -32);
  CHECK(scheme::code_range(Format::kQ5_0, 5).qmax == 31);
}

TEST_CASE("the formats table and the GGUF type table agree with the gguf Python package",
          "[scheme][formats][gguf][reference]") {
  const std::string path = qat::test::temp_dir() + "/gguf_types.txt";
  REQUIRE(qat::test::run_python("gguf_types_ref.py", {path}) == 0);
  struct PyType {
    int id, block_size, type_size;
  };
  std::map<std::string, PyType> types;
  std::map<std::string, int> ftypes;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string kind, name;
    ls >> kind >> name;
    if (kind == "type") {
      PyType t{};
      ls >> t.id >> t.block_size >> t.type_size;
      types[name] = t;
    } else if (kind == "ftype") {
      ls >> ftypes[name];
    }
  }
  REQUIRE(types.size() >= 30);
  // The formats' rows.
  for (const GgmlFacts& g : kGgml) {
    const scheme::FormatTraits& t = scheme::traits(g.format);
    CAPTURE(format_name(g.format));
    REQUIRE(types.count(std::string(t.gguf.name)));
    const PyType& p = types.at(std::string(t.gguf.name));
    CHECK(p.id == t.gguf.type);
    CHECK(p.block_size == t.fixed_block);
    CHECK(p.type_size == t.block_bytes);
    REQUIRE(ftypes.count(g.ftype_name));
    CHECK(ftypes.at(g.ftype_name) == t.gguf.llama_ftype);
  }
  // The reader's whole table: every type gguf-py knows has our id, name and sizes, and every id
  // we accept is one gguf-py knows.
  for (const auto& [name, p] : types) {
    CAPTURE(name, p.id);
    const io::GgmlTypeTraits* t = io::ggml_type_traits(static_cast<uint32_t>(p.id));
    REQUIRE(t != nullptr);
    CHECK(t->name == name);
    CHECK(t->block_size == p.block_size);
    // gguf-py still sizes Q8_1 with fp32 d and s (40 bytes); ggml's block_q8_1 holds two fp16
    // (ggml-common.h: 36 bytes), which is what a file holds and what the reader uses.
    CHECK(t->type_size == (name == "Q8_1" ? 36 : p.type_size));
  }
  // The mixtures' file types (qat/io/llama_mix.h).
  CHECK(io::llama_mix_file_type("q4_k_m") == static_cast<uint32_t>(ftypes.at("MOSTLY_Q4_K_M")));
  CHECK(io::llama_mix_file_type("q5_k_m") == static_cast<uint32_t>(ftypes.at("MOSTLY_Q5_K_M")));
  for (uint32_t id = 0; id < 64; ++id) {
    const io::GgmlTypeTraits* t = io::ggml_type_traits(id);
    if (t == nullptr) continue;
    CAPTURE(id, std::string(t->name));
    CHECK(types.count(std::string(t->name)) == 1);
  }
}
