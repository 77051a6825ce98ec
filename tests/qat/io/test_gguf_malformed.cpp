// The GGUF reader rejects each class of malformed file with a message naming the file, the key
// or tensor, and what was expected vs found -- and never allocates on an unchecked count.
#include <catch2/catch.hpp>

#include "qat/io/gguf.h"
#include "qat/io/gguf_file.h"
#include "tests/qat/io/io_test_util.h"

namespace io = qat::io;
using Catch::Contains;
using qat::test::io::Bytes;

namespace {

constexpr uint32_t kString = 8, kArray = 9, kU32 = 4, kU64 = 10, kI32 = 5;
constexpr uint32_t kF32 = 0, kQ4_0 = 2;

Bytes header(uint64_t n_tensors, uint64_t n_kv, uint32_t version = 3) {
  Bytes b;
  b.raw("GGUF").u32(version).u64(n_tensors).u64(n_kv);
  return b;
}

void tensor_info(Bytes& b, const std::string& name, std::vector<int64_t> ne, uint32_t type,
                 uint64_t offset) {
  b.str(name).u32(static_cast<uint32_t>(ne.size()));
  for (int64_t d : ne) b.i64(d);
  b.u32(type).u64(offset);
}

void parse_gguf(const std::string& bytes) {
  (void)io::parse_gguf(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "bad.gguf");
}

// A valid file: one string KV, tensors a (F32 [4]) and b (F32 [2, 3]) at offsets 0 and 32.
std::string valid() {
  Bytes b = header(2, 1);
  b.str("general.architecture").u32(kString).str("llama");
  tensor_info(b, "a", {4}, kF32, 0);
  tensor_info(b, "b", {2, 3}, kF32, 32);
  b.pad_to(32).zeros(64);  // a: 16 bytes + 16 padding; b: 24 bytes + 8 padding
  return b.bytes();
}

// One KV of `type` followed by `value_bytes`, no tensors.
std::string one_kv(uint32_t type, const Bytes& value) {
  Bytes b = header(0, 1);
  b.str("k").u32(type).raw(value.bytes());
  return b.bytes();
}

// One tensor whose info is `info`, no KVs, followed by `data` zero bytes after padding.
std::string one_tensor(const std::string& name, std::vector<int64_t> ne, uint32_t type,
                       uint64_t offset, size_t data) {
  Bytes b = header(1, 0);
  tensor_info(b, name, ne, type, offset);
  b.pad_to(32).zeros(data);
  return b.bytes();
}

}  // namespace

TEST_CASE("GGUF: a valid hand-made file parses (control for the malformed cases)",
          "[io][gguf][malformed]") {
  const std::string v = valid();
  const auto c = io::parse_gguf(reinterpret_cast<const uint8_t*>(v.data()), v.size(), "ok.gguf");
  CHECK(c.metadata.get_string("general.architecture") == "llama");
  REQUIRE(c.tensors.size() == 2);
  CHECK(c.tensors[1].ne == std::vector<int64_t>{2, 3});
  CHECK(c.tensors[1].nbytes == 24);
  CHECK(c.data_offset % 32 == 0);
}

TEST_CASE("GGUF: every truncation of a valid file is an error, never a crash",
          "[io][gguf][malformed]") {
  const std::string v = valid();
  // The last tensor's trailing padding is not required (llama.cpp's bounds rule), so the
  // shortest valid prefix ends with b's data.
  const size_t min_valid = v.size() - 8;
  for (size_t n = 0; n < min_valid; ++n) {
    CAPTURE(n);
    REQUIRE_THROWS_AS(parse_gguf(v.substr(0, n)), std::runtime_error);
  }
  REQUIRE_THROWS_WITH(parse_gguf(v.substr(0, 10)), Contains("bad.gguf") && Contains("truncated"));
  REQUIRE_THROWS_WITH(parse_gguf(v.substr(0, min_valid - 1)),
                      Contains("tensor 'b'") && Contains("runs past the end of the file"));
  REQUIRE_NOTHROW(parse_gguf(v.substr(0, min_valid)));
}

TEST_CASE("GGUF: bad magic and versions are rejected", "[io][gguf][malformed]") {
  REQUIRE_THROWS_WITH(parse_gguf("GGUX" + valid().substr(4)), Contains("bad magic"));
  REQUIRE_THROWS_WITH(parse_gguf(header(0, 0, 1).bytes()), Contains("unsupported version 1"));
  REQUIRE_THROWS_WITH(parse_gguf(header(0, 0, 0x03000000).bytes()), Contains("big-endian"));
}

TEST_CASE("GGUF: huge counts are rejected before anything is allocated", "[io][gguf][malformed]") {
  REQUIRE_THROWS_WITH(parse_gguf(header(0, uint64_t{1} << 60).bytes()),
                      Contains("KV count 1152921504606846976 cannot fit"));
  REQUIRE_THROWS_WITH(parse_gguf(header(uint64_t{1} << 60, 0).bytes()),
                      Contains("tensor count 1152921504606846976 cannot fit"));
  // A string array that claims 2^60 elements.
  Bytes arr;
  arr.u32(kString).u64(uint64_t{1} << 60).str("x");
  REQUIRE_THROWS_WITH(
      parse_gguf(one_kv(kArray, arr)),
      Contains("key 'k'") && Contains("array of 1152921504606846976 strings needs at least"));
  // A numeric array whose byte size overflows u64.
  Bytes nums;
  nums.u32(kU64).u64(~uint64_t{0} / 4).u64(1);
  REQUIRE_THROWS_WITH(parse_gguf(one_kv(kArray, nums)),
                      Contains("x UINT64 runs past the end of the file"));
}

TEST_CASE("GGUF: a string length past the end of the file is rejected", "[io][gguf][malformed]") {
  Bytes s;
  s.u64(1000).raw("short");
  REQUIRE_THROWS_WITH(parse_gguf(one_kv(kString, s)),
                      Contains("key 'k'") && Contains("string length 1000 runs past the end"));
  Bytes b = header(0, 1);
  b.u64(uint64_t{1} << 62).raw("key").zeros(8);
  REQUIRE_THROWS_WITH(parse_gguf(b.bytes()),
                      Contains("key #0: string length 4611686018427387904 runs past the end"));
}

TEST_CASE("GGUF: nested arrays and invalid value types are rejected", "[io][gguf][malformed]") {
  Bytes nested;
  nested.u32(kArray).u64(1).u32(kI32).u64(0);
  REQUIRE_THROWS_WITH(parse_gguf(one_kv(kArray, nested)),
                      Contains("key 'k': nested arrays are not allowed"));
  REQUIRE_THROWS_WITH(parse_gguf(one_kv(13, Bytes().u32(0))),
                      Contains("key 'k': invalid value type 13"));
}

TEST_CASE("GGUF: duplicate keys and duplicate tensor names are rejected", "[io][gguf][malformed]") {
  Bytes b = header(0, 2);
  b.str("k").u32(kU32).u32(1).str("k").u32(kU32).u32(2);
  REQUIRE_THROWS_WITH(parse_gguf(b.bytes()), Contains("duplicate key 'k'"));
  Bytes t = header(2, 0);
  tensor_info(t, "w", {4}, kF32, 0);
  tensor_info(t, "w", {4}, kF32, 32);
  t.pad_to(32).zeros(64);
  REQUIRE_THROWS_WITH(parse_gguf(t.bytes()), Contains("duplicate tensor name 'w'"));
}

TEST_CASE("GGUF: non-sequential and unaligned tensor offsets are rejected",
          "[io][gguf][malformed]") {
  REQUIRE_THROWS_WITH(parse_gguf(one_tensor("w", {4}, kF32, 32, 64)),
                      Contains("tensor 'w': data offset 32, expected 0"));
  // b directly after a's 16 bytes: sequential but not padded to the alignment of 32.
  Bytes t = header(2, 0);
  tensor_info(t, "a", {4}, kF32, 0);
  tensor_info(t, "b", {4}, kF32, 16);
  t.pad_to(32).zeros(64);
  REQUIRE_THROWS_WITH(parse_gguf(t.bytes()), Contains("tensor 'b': data offset 16, expected 32"));
}

TEST_CASE("GGUF: bad tensor shapes, types and names are rejected", "[io][gguf][malformed]") {
  REQUIRE_THROWS_WITH(parse_gguf(one_tensor("w", {1, 1, 1, 1, 1}, kF32, 0, 32)),
                      Contains("tensor 'w': n_dims = 5, at most 4"));
  REQUIRE_THROWS_WITH(
      parse_gguf(one_tensor("w", {40}, kQ4_0, 0, 64)),
      Contains("tensor 'w': ne[0] = 40 is not a multiple of the Q4_0 block size 32"));
  REQUIRE_THROWS_WITH(parse_gguf(one_tensor("w", {4, -1}, kF32, 0, 32)),
                      Contains("ne[1] = -1 is negative"));
  REQUIRE_THROWS_WITH(
      parse_gguf(one_tensor("w", {int64_t{1} << 40, int64_t{1} << 40}, kF32, 0, 32)),
      Contains("more than INT64_MAX elements"));
  REQUIRE_THROWS_WITH(parse_gguf(one_tensor("w", {4}, 4, 0, 32)),
                      Contains("tensor 'w': invalid ggml type 4"));
  REQUIRE_THROWS_WITH(parse_gguf(one_tensor("w", {4}, 99, 0, 32)),
                      Contains("invalid ggml type 99"));
  REQUIRE_THROWS_WITH(parse_gguf(one_tensor(std::string(64, 'n'), {4}, kF32, 0, 32)),
                      Contains("name of 64 bytes, at most 63 allowed"));
  REQUIRE_NOTHROW(parse_gguf(one_tensor(std::string(63, 'n'), {4}, kF32, 0, 32)));
  REQUIRE_THROWS_WITH(parse_gguf(one_tensor("w", {1024}, kF32, 0, 32)),
                      Contains("tensor 'w': data") && Contains("runs past the end of the file"));
}

TEST_CASE("GGUF: a bad general.alignment is rejected", "[io][gguf][malformed]") {
  Bytes b = header(0, 1);
  b.str("general.alignment").u32(kU64).u64(64);
  REQUIRE_THROWS_WITH(parse_gguf(b.bytes()),
                      Contains("general.alignment': expected UINT32, found UINT64"));
  Bytes c = header(0, 1);
  c.str("general.alignment").u32(kU32).u32(48);
  REQUIRE_THROWS_WITH(parse_gguf(c.bytes()),
                      Contains("general.alignment = 48, expected a power of two"));
}

TEST_CASE("GGUF: opening a malformed file names the path", "[io][gguf][malformed]") {
  const std::string path = qat::test::temp_dir() + "/broken.gguf";
  qat::test::io::write_file(path, valid().substr(0, 12));
  REQUIRE_THROWS_WITH(io::GgufFile::open(path), Contains(path) && Contains("truncated"));
  const std::string empty = qat::test::temp_dir() + "/empty.gguf";
  qat::test::io::write_file(empty, "");
  REQUIRE_THROWS_WITH(io::GgufFile::open(empty), Contains(empty) && Contains("truncated"));
}
