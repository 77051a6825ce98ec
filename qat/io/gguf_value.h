// GGUF metadata values (plain C++): one scalar or one array of a single scalar type (GGUF has no
// nested arrays), and the ordered key -> value map of a file with typed getters.
//
// The getters check types exactly, as llama.cpp does (a UINT64 context_length does not load
// there), and throw std::runtime_error naming the key, the expected and the found type.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace qat::io {

enum class GgufValueType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
inline constexpr uint32_t kGgufNumValueTypes = 13;

// "UINT32", "ARRAY", ...; "type N" for an invalid id.
std::string gguf_type_name(GgufValueType t);
// Bytes of one element of a fixed-size type; 0 for STRING and ARRAY.
size_t gguf_type_size(GgufValueType t);

// The GGUF type of a C++ scalar (bool is stored as one byte).
template <class T>
struct GgufTypeOf;
template <>
struct GgufTypeOf<uint8_t> {
  static constexpr GgufValueType kValue = GgufValueType::kUint8;
};
template <>
struct GgufTypeOf<int8_t> {
  static constexpr GgufValueType kValue = GgufValueType::kInt8;
};
template <>
struct GgufTypeOf<uint16_t> {
  static constexpr GgufValueType kValue = GgufValueType::kUint16;
};
template <>
struct GgufTypeOf<int16_t> {
  static constexpr GgufValueType kValue = GgufValueType::kInt16;
};
template <>
struct GgufTypeOf<uint32_t> {
  static constexpr GgufValueType kValue = GgufValueType::kUint32;
};
template <>
struct GgufTypeOf<int32_t> {
  static constexpr GgufValueType kValue = GgufValueType::kInt32;
};
template <>
struct GgufTypeOf<float> {
  static constexpr GgufValueType kValue = GgufValueType::kFloat32;
};
template <>
struct GgufTypeOf<bool> {
  static constexpr GgufValueType kValue = GgufValueType::kBool;
};
template <>
struct GgufTypeOf<uint64_t> {
  static constexpr GgufValueType kValue = GgufValueType::kUint64;
};
template <>
struct GgufTypeOf<int64_t> {
  static constexpr GgufValueType kValue = GgufValueType::kInt64;
};
template <>
struct GgufTypeOf<double> {
  static constexpr GgufValueType kValue = GgufValueType::kFloat64;
};

class GgufValue {
 public:
  GgufValue() = default;

  template <class T>
  static GgufValue scalar(T v) {
    GgufValue r(GgufTypeOf<T>::kValue, GgufTypeOf<T>::kValue, 1);
    r.append_raw(v);
    return r;
  }
  template <class T>
  static GgufValue array(const std::vector<T>& v) {
    GgufValue r(GgufValueType::kArray, GgufTypeOf<T>::kValue, v.size());
    for (const T& x : v) r.append_raw(x);
    return r;
  }
  static GgufValue string(std::string s);
  static GgufValue string_array(std::vector<std::string> v);
  // From raw little-endian element bytes of a fixed-size type (used by the parser).
  static GgufValue from_raw(bool is_array, GgufValueType elem, uint64_t count,
                            std::string_view bytes);

  GgufValueType type() const { return type_; }          // kArray for arrays
  GgufValueType element_type() const { return elem_; }  // == type() for scalars
  bool is_array() const { return type_ == GgufValueType::kArray; }
  uint64_t count() const { return count_; }  // 1 for a scalar
  // Little-endian bytes of the elements (fixed-size types; empty for strings).
  const std::string& raw() const { return bytes_; }
  const std::vector<std::string>& strings() const { return strings_; }  // string types
  // "UINT32" or "ARRAY[STRING]".
  std::string type_string() const;

  // Typed access; `what` names the key in the error ("expected UINT32, found UINT64").
  template <class T>
  T as(const std::string& what) const {
    require(false, GgufTypeOf<T>::kValue, what);
    return element<T>(0);
  }
  template <class T>
  std::vector<T> as_array(const std::string& what) const {
    require(true, GgufTypeOf<T>::kValue, what);
    std::vector<T> out;
    out.reserve(count_);
    for (uint64_t i = 0; i < count_; ++i) out.push_back(element<T>(i));
    return out;
  }
  const std::string& as_string(const std::string& what) const;
  const std::vector<std::string>& as_string_array(const std::string& what) const;

  bool operator==(const GgufValue& o) const {
    return type_ == o.type_ && elem_ == o.elem_ && count_ == o.count_ && bytes_ == o.bytes_ &&
           strings_ == o.strings_;
  }

 private:
  GgufValue(GgufValueType type, GgufValueType elem, uint64_t count)
      : type_(type), elem_(elem), count_(count) {}
  template <class T>
  void append_raw(T v) {
    if constexpr (std::is_same_v<T, bool>) {
      bytes_.push_back(static_cast<char>(v ? 1 : 0));
    } else {
      char b[sizeof(T)];
      std::memcpy(b, &v, sizeof(T));
      bytes_.append(b, sizeof(T));
    }
  }
  template <class T>
  T element(uint64_t i) const {
    if constexpr (std::is_same_v<T, bool>) {
      return bytes_[i] != 0;  // ggml reads a bool as int8 != 0
    } else {
      T v;
      std::memcpy(&v, bytes_.data() + i * sizeof(T), sizeof(T));
      return v;
    }
  }
  void require(bool array, GgufValueType elem, const std::string& what) const;

  GgufValueType type_ = GgufValueType::kUint8;
  GgufValueType elem_ = GgufValueType::kUint8;
  uint64_t count_ = 0;
  std::string bytes_;
  std::vector<std::string> strings_;
};

// Key -> value in file order.
class GgufMetadata {
 public:
  // Sets or replaces (keeping the original position) a key.
  void set(const std::string& key, GgufValue value);
  bool erase(const std::string& key);
  bool has(const std::string& key) const { return index_.count(key) != 0; }
  const GgufValue* find(const std::string& key) const;
  // Throws "GGUF key 'k' not found" when absent.
  const GgufValue& at(const std::string& key) const;
  const std::vector<std::pair<std::string, GgufValue>>& entries() const { return entries_; }
  size_t size() const { return entries_.size(); }

  template <class T>
  T get(const std::string& key) const {
    return at(key).as<T>(label(key));
  }
  template <class T>
  std::optional<T> get_optional(const std::string& key) const {
    const GgufValue* v = find(key);
    if (v == nullptr) return std::nullopt;
    return v->as<T>(label(key));
  }
  template <class T>
  std::vector<T> get_array(const std::string& key) const {
    return at(key).as_array<T>(label(key));
  }

  uint8_t get_u8(const std::string& k) const { return get<uint8_t>(k); }
  int8_t get_i8(const std::string& k) const { return get<int8_t>(k); }
  uint16_t get_u16(const std::string& k) const { return get<uint16_t>(k); }
  int16_t get_i16(const std::string& k) const { return get<int16_t>(k); }
  uint32_t get_u32(const std::string& k) const { return get<uint32_t>(k); }
  int32_t get_i32(const std::string& k) const { return get<int32_t>(k); }
  uint64_t get_u64(const std::string& k) const { return get<uint64_t>(k); }
  int64_t get_i64(const std::string& k) const { return get<int64_t>(k); }
  float get_f32(const std::string& k) const { return get<float>(k); }
  double get_f64(const std::string& k) const { return get<double>(k); }
  bool get_bool(const std::string& k) const { return get<bool>(k); }
  const std::string& get_string(const std::string& k) const { return at(k).as_string(label(k)); }
  std::optional<std::string> get_string_optional(const std::string& k) const;
  const std::vector<std::string>& get_string_array(const std::string& k) const {
    return at(k).as_string_array(label(k));
  }
  std::vector<int32_t> get_i32_array(const std::string& k) const { return get_array<int32_t>(k); }
  std::vector<uint32_t> get_u32_array(const std::string& k) const { return get_array<uint32_t>(k); }
  std::vector<float> get_f32_array(const std::string& k) const { return get_array<float>(k); }

 private:
  static std::string label(const std::string& key) { return "GGUF key '" + key + "'"; }
  std::vector<std::pair<std::string, GgufValue>> entries_;
  std::unordered_map<std::string, size_t> index_;
};

}  // namespace qat::io
