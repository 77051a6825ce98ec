#include "qat/io/gguf.h"

#include <array>
#include <stdexcept>
#include <unordered_set>

#include "qat/io/byte_cursor.h"
#include "qat/scheme/format.h"

namespace qat::io {

namespace {

// ggml's types (ggml.c type_traits: block size, bytes per block), indexed by ggml type id. The
// types a scheme::Format stores come from its row (scheme::kFormatTraits: gguf.type, gguf.name,
// fixed_block, block_bytes); the list below is the others, which the reader parses but no format
// produces: the plain types and the block types we do not quantize to.
constexpr uint32_t kNumGgmlIds = 42;
struct OtherType {
  uint32_t id;
  GgmlTypeTraits traits;
};
// clang-format off
constexpr OtherType kOtherTypes[] = {
  {0, {"F32", 1, 4}}, {1, {"F16", 1, 2}}, {9, {"Q8_1", 32, 36}},
  {10, {"Q2_K", 256, 84}}, {11, {"Q3_K", 256, 110}}, {15, {"Q8_K", 256, 292}},
  {16, {"IQ2_XXS", 256, 66}}, {17, {"IQ2_XS", 256, 74}}, {18, {"IQ3_XXS", 256, 98}},
  {19, {"IQ1_S", 256, 50}}, {20, {"IQ4_NL", 32, 18}}, {21, {"IQ3_S", 256, 110}},
  {22, {"IQ2_S", 256, 82}}, {23, {"IQ4_XS", 256, 136}}, {24, {"I8", 1, 1}}, {25, {"I16", 1, 2}},
  {26, {"I32", 1, 4}}, {27, {"I64", 1, 8}}, {28, {"F64", 1, 8}}, {29, {"IQ1_M", 256, 56}},
  {30, {"BF16", 1, 2}}, {34, {"TQ1_0", 256, 54}}, {35, {"TQ2_0", 256, 66}},
  {39, {"MXFP4", 32, 17}}, {40, {"NVFP4", 64, 36}}, {41, {"Q1_0", 128, 18}},
};
// clang-format on

// The whole table: kOtherTypes, then every format's row that has a GGUF type. An id filled twice
// leaves block_size -1, which the static_assert below catches.
constexpr std::array<GgmlTypeTraits, kNumGgmlIds> make_ggml_types() {
  std::array<GgmlTypeTraits, kNumGgmlIds> table{};
  auto fill = [&table](uint32_t id, GgmlTypeTraits t) {
    table[id] = table[id].block_size == 0 ? t : GgmlTypeTraits{"", -1, 0};
  };
  for (const OtherType& o : kOtherTypes) fill(o.id, o.traits);
  for (const scheme::FormatTraits& f : scheme::kFormatTraits) {
    if (f.gguf.type >= 0) {
      fill(static_cast<uint32_t>(f.gguf.type), {f.gguf.name, f.fixed_block, f.block_bytes});
    }
  }
  return table;
}
constexpr std::array<GgmlTypeTraits, kNumGgmlIds> kGgmlTypes = make_ggml_types();
constexpr bool each_id_once() {
  for (const GgmlTypeTraits& t : kGgmlTypes) {
    if (t.block_size < 0) return false;
  }
  return true;
}
static_assert(each_id_once(), "a ggml type id is both in kOtherTypes and in a format's row");

constexpr char kMagic[4] = {'G', 'G', 'U', 'F'};
constexpr char kAlignmentKey[] = "general.alignment";

std::string in_quotes(const std::string& s) {
  return "'" + s + "'";
}

std::string fmt_ne(const std::vector<int64_t>& ne) {
  std::string s = "[";
  for (size_t i = 0; i < ne.size(); ++i) s += (i ? ", " : "") + std::to_string(ne[i]);
  return s + "]";
}

// Smallest encoding of one KV: key length (8) + type (4) + a one-byte value.
constexpr uint64_t kMinKvBytes = 13;
// Smallest tensor info: name length (8) + n_dims (4) + type (4) + offset (8).
constexpr uint64_t kMinTensorInfoBytes = 24;

std::string read_string(ByteCursor& cur, const std::string& what) {
  const uint64_t n = cur.read<uint64_t>(what + " length");
  if (n > cur.remaining()) {
    cur.fail("GGUF: " + what + ": string length " + std::to_string(n) +
             " runs past the end of the file (" + std::to_string(cur.remaining()) +
             " bytes remain at offset " + std::to_string(cur.pos()) + ")");
  }
  return std::string(cur.read_bytes(n, what));
}

GgufValueType read_value_type(ByteCursor& cur, const std::string& what) {
  const uint32_t t = cur.read<uint32_t>(what + " type");
  if (t >= kGgufNumValueTypes) {
    cur.fail("GGUF: " + what + ": invalid value type " + std::to_string(t) + " (expected 0..12)");
  }
  return static_cast<GgufValueType>(t);
}

GgufValue read_value(ByteCursor& cur, const std::string& key) {
  const std::string what = "key " + in_quotes(key);
  GgufValueType type = read_value_type(cur, what);
  const bool is_array = type == GgufValueType::kArray;
  uint64_t count = 1;
  if (is_array) {
    type = read_value_type(cur, what + " array element");
    if (type == GgufValueType::kArray)
      cur.fail("GGUF: " + what + ": nested arrays are not allowed");
    count = cur.read<uint64_t>(what + " array length");
  }
  if (type == GgufValueType::kString) {
    // Every string takes at least its 8-byte length: a count the file cannot hold is a lie,
    // caught before anything is reserved.
    if (count > cur.remaining() / 8) {
      cur.fail("GGUF: " + what + ": array of " + std::to_string(count) +
               " strings needs at least " + std::to_string(count) + " x 8 bytes but only " +
               std::to_string(cur.remaining()) + " remain");
    }
    std::vector<std::string> strings;
    strings.reserve(static_cast<size_t>(count));
    for (uint64_t i = 0; i < count; ++i) {
      strings.push_back(read_string(cur, is_array ? what + "[" + std::to_string(i) + "]" : what));
    }
    return is_array ? GgufValue::string_array(std::move(strings))
                    : GgufValue::string(std::move(strings[0]));
  }
  const uint64_t size = gguf_type_size(type);
  uint64_t nbytes = 0;
  if (!checked_mul(count, size, &nbytes) || nbytes > cur.remaining()) {
    cur.fail("GGUF: " + what + ": " + std::to_string(count) + " x " + gguf_type_name(type) +
             " runs past the end of the file (" + std::to_string(cur.remaining()) +
             " bytes remain)");
  }
  return GgufValue::from_raw(is_array, type, count, cur.read_bytes(nbytes, what));
}

}  // namespace

const GgmlTypeTraits* ggml_type_traits(uint32_t type) {
  if (type >= kNumGgmlIds || kGgmlTypes[type].block_size == 0) return nullptr;
  return &kGgmlTypes[type];
}

std::string ggml_type_name(GgmlType type) {
  const GgmlTypeTraits* t = ggml_type_traits(static_cast<uint32_t>(type));
  return t ? std::string(t->name) : "type " + std::to_string(static_cast<uint32_t>(type));
}

int64_t GgufTensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : ne) n *= d;  // bounded by the parser's overflow check
  return n;
}

std::vector<int64_t> GgufTensorInfo::torch_shape() const {
  return {ne.rbegin(), ne.rend()};
}

uint64_t GgufTensorInfo::row_bytes() const {
  const GgmlTypeTraits* t = ggml_type_traits(static_cast<uint32_t>(type));
  const int64_t ne0 = ne.empty() ? 1 : ne[0];
  return static_cast<uint64_t>(ne0 / t->block_size) * static_cast<uint64_t>(t->type_size);
}

const GgufTensorInfo* GgufContents::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors[it->second];
}

void GgufContents::reindex() {
  index_.clear();
  for (size_t i = 0; i < tensors.size(); ++i) index_[tensors[i].name] = i;
}

uint64_t ggml_nbytes(GgmlType type, const std::vector<int64_t>& ne, const std::string& what) {
  const GgmlTypeTraits* t = ggml_type_traits(static_cast<uint32_t>(type));
  if (t == nullptr) throw std::runtime_error(what + ": invalid ggml type " + ggml_type_name(type));
  if (ne.size() > static_cast<size_t>(kGgufMaxDims)) {
    throw std::runtime_error(what + ": " + std::to_string(ne.size()) +
                             " dimensions, at most 4 allowed");
  }
  uint64_t n = 1;
  for (size_t i = 0; i < ne.size(); ++i) {
    if (ne[i] < 0) {
      throw std::runtime_error(what + ": ne[" + std::to_string(i) + "] = " + std::to_string(ne[i]) +
                               " is negative");
    }
    if (!checked_mul(n, static_cast<uint64_t>(ne[i]), &n) || n > static_cast<uint64_t>(INT64_MAX)) {
      throw std::runtime_error(what + ": ne " + fmt_ne(ne) + " has more than INT64_MAX elements");
    }
  }
  const int64_t ne0 = ne.empty() ? 1 : ne[0];
  if (ne0 % t->block_size != 0) {
    throw std::runtime_error(what + ": ne[0] = " + std::to_string(ne0) +
                             " is not a multiple of the " + std::string(t->name) + " block size " +
                             std::to_string(t->block_size));
  }
  uint64_t bytes = 0;
  if (!checked_mul(n / static_cast<uint64_t>(t->block_size), static_cast<uint64_t>(t->type_size),
                   &bytes)) {
    throw std::runtime_error(what + ": size in bytes of ne " + fmt_ne(ne) + " overflows");
  }
  return bytes;
}

uint64_t gguf_alignment(const GgufMetadata& metadata, const std::string& origin) {
  const GgufValue* v = metadata.find(kAlignmentKey);
  if (v == nullptr) return kGgufDefaultAlignment;
  const uint64_t a = v->as<uint32_t>(origin + ": GGUF: key '" + std::string(kAlignmentKey) + "'");
  if (a == 0 || (a & (a - 1)) != 0 || a > kGgufMaxAlignment) {
    throw std::runtime_error(origin + ": GGUF: general.alignment = " + std::to_string(a) +
                             ", expected a power of two <= " + std::to_string(kGgufMaxAlignment));
  }
  return a;
}

GgufContents parse_gguf(const uint8_t* data, size_t size, const std::string& origin) {
  ByteCursor cur(data, size, origin);
  const auto fail = [&](const std::string& what) { cur.fail("GGUF: " + what); };
  const std::string_view magic = cur.read_bytes(4, "magic");
  if (magic != std::string_view(kMagic, 4)) fail("bad magic, expected \"GGUF\"");
  GgufContents c;
  c.version = cur.read<uint32_t>("version");
  if (c.version != 2 && c.version != 3) {
    fail("unsupported version " + std::to_string(c.version) + ", expected 3 (or 2)" +
         ((c.version & 0xFFFF) == 0 ? " (a big-endian file?)" : ""));
  }
  const uint64_t n_tensors = cur.read<uint64_t>("tensor count");
  const uint64_t n_kv = cur.read<uint64_t>("KV count");
  if (n_kv > cur.remaining() / kMinKvBytes) {
    fail("KV count " + std::to_string(n_kv) + " cannot fit in the " +
         std::to_string(cur.remaining()) + " bytes that remain");
  }
  for (uint64_t i = 0; i < n_kv; ++i) {
    const std::string key = read_string(cur, "key #" + std::to_string(i));
    if (c.metadata.has(key)) fail("duplicate key " + in_quotes(key));
    c.metadata.set(key, read_value(cur, key));
  }
  c.alignment = gguf_alignment(c.metadata, origin);

  if (n_tensors > cur.remaining() / kMinTensorInfoBytes) {
    fail("tensor count " + std::to_string(n_tensors) + " cannot fit in the " +
         std::to_string(cur.remaining()) + " bytes that remain");
  }
  std::unordered_set<std::string> names;
  c.tensors.reserve(static_cast<size_t>(n_tensors));
  uint64_t expected_offset = 0;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    GgufTensorInfo t;
    t.name = read_string(cur, "tensor #" + std::to_string(i) + " name");
    const std::string what = "tensor " + in_quotes(t.name);
    if (t.name.size() > kGgufMaxNameBytes) {
      fail(what + ": name of " + std::to_string(t.name.size()) + " bytes, at most " +
           std::to_string(kGgufMaxNameBytes) + " allowed");
    }
    if (!names.insert(t.name).second) fail("duplicate tensor name " + in_quotes(t.name));
    const uint32_t n_dims = cur.read<uint32_t>(what + " n_dims");
    if (n_dims > static_cast<uint32_t>(kGgufMaxDims)) {
      fail(what + ": n_dims = " + std::to_string(n_dims) + ", at most 4 allowed");
    }
    for (uint32_t d = 0; d < n_dims; ++d) t.ne.push_back(cur.read<int64_t>(what + " ne"));
    const uint32_t type = cur.read<uint32_t>(what + " type");
    if (ggml_type_traits(type) == nullptr)
      fail(what + ": invalid ggml type " + std::to_string(type));
    t.type = static_cast<GgmlType>(type);
    t.nbytes = ggml_nbytes(t.type, t.ne, origin + ": GGUF: " + what);
    t.offset = cur.read<uint64_t>(what + " offset");
    // Offsets are exactly sequential: each is the sum of the previous sizes padded to alignment.
    if (t.offset != expected_offset) {
      fail(what + ": data offset " + std::to_string(t.offset) + ", expected " +
           std::to_string(expected_offset) + " (offsets must be sequential and aligned to " +
           std::to_string(c.alignment) + ")");
    }
    uint64_t padded = 0;
    if (!checked_pad(t.nbytes, c.alignment, &padded) ||
        !checked_add(expected_offset, padded, &expected_offset)) {
      fail(what + ": data section size overflows");
    }
    c.tensors.push_back(std::move(t));
  }
  c.reindex();

  uint64_t data_offset = cur.pos();
  if (n_tensors > 0 && !checked_pad(data_offset, c.alignment, &data_offset))
    fail("data offset overflows");
  if (data_offset > size) {
    fail("the data section would start at " + std::to_string(data_offset) +
         ", past the end of the file (" + std::to_string(size) + " bytes)");
  }
  c.data_offset = data_offset;
  // llama.cpp's rule: each tensor's bytes lie within the file (the last one's padding may not).
  for (const GgufTensorInfo& t : c.tensors) {
    const uint64_t avail = size - data_offset;
    if (t.offset > avail || t.nbytes > avail - t.offset) {
      fail("tensor " + in_quotes(t.name) + ": data [" + std::to_string(data_offset + t.offset) +
           ", +" + std::to_string(t.nbytes) + ") runs past the end of the file (" +
           std::to_string(size) + " bytes)");
    }
  }
  return c;
}

namespace {

template <class T>
void put(std::string& out, T v) {
  char b[sizeof(T)];
  std::memcpy(b, &v, sizeof(T));
  out.append(b, sizeof(T));
}

void put_string(std::string& out, const std::string& s) {
  put<uint64_t>(out, s.size());
  out += s;
}

void put_value(std::string& out, const GgufValue& v) {
  put<uint32_t>(out, static_cast<uint32_t>(v.type()));
  if (v.is_array()) {
    put<uint32_t>(out, static_cast<uint32_t>(v.element_type()));
    put<uint64_t>(out, v.count());
  }
  if (v.element_type() == GgufValueType::kString) {
    for (const std::string& s : v.strings()) put_string(out, s);
  } else {
    out += v.raw();
  }
}

}  // namespace

uint64_t layout_gguf_tensors(std::vector<GgufTensorInfo>& tensors, uint64_t alignment) {
  uint64_t offset = 0;
  for (GgufTensorInfo& t : tensors) {
    t.offset = offset;
    uint64_t padded = 0;
    if (!checked_pad(t.nbytes, alignment, &padded) || !checked_add(offset, padded, &offset)) {
      throw std::runtime_error("GGUF writer: tensor " + in_quotes(t.name) +
                               ": data section size overflows");
    }
  }
  return offset;
}

std::string encode_gguf_header(const GgufMetadata& metadata,
                               const std::vector<GgufTensorInfo>& tensors, uint64_t alignment) {
  std::string out(kMagic, 4);
  put<uint32_t>(out, 3);
  put<uint64_t>(out, tensors.size());
  put<uint64_t>(out, metadata.size());
  for (const auto& [key, value] : metadata.entries()) {
    put_string(out, key);
    put_value(out, value);
  }
  for (const GgufTensorInfo& t : tensors) {
    put_string(out, t.name);
    put<uint32_t>(out, static_cast<uint32_t>(t.ne.size()));
    for (int64_t d : t.ne) put<int64_t>(out, d);
    put<uint32_t>(out, static_cast<uint32_t>(t.type));
    put<uint64_t>(out, t.offset);
  }
  out.append((alignment - out.size() % alignment) % alignment, '\0');
  return out;
}

}  // namespace qat::io
