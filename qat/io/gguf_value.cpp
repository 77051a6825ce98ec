#include "qat/io/gguf_value.h"

namespace qat::io {

namespace {

constexpr std::string_view kTypeNames[kGgufNumValueTypes] = {
    "UINT8", "INT8",   "UINT16", "INT16",  "UINT32", "INT32",  "FLOAT32",
    "BOOL",  "STRING", "ARRAY",  "UINT64", "INT64",  "FLOAT64"};
constexpr size_t kTypeSizes[kGgufNumValueTypes] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

}  // namespace

std::string gguf_type_name(GgufValueType t) {
  const auto i = static_cast<uint32_t>(t);
  return i < kGgufNumValueTypes ? std::string(kTypeNames[i]) : "type " + std::to_string(i);
}

size_t gguf_type_size(GgufValueType t) {
  const auto i = static_cast<uint32_t>(t);
  return i < kGgufNumValueTypes ? kTypeSizes[i] : 0;
}

GgufValue GgufValue::string(std::string s) {
  GgufValue r(GgufValueType::kString, GgufValueType::kString, 1);
  r.strings_.push_back(std::move(s));
  return r;
}

GgufValue GgufValue::string_array(std::vector<std::string> v) {
  GgufValue r(GgufValueType::kArray, GgufValueType::kString, v.size());
  r.strings_ = std::move(v);
  return r;
}

GgufValue GgufValue::from_raw(bool is_array, GgufValueType elem, uint64_t count,
                              std::string_view bytes) {
  GgufValue r(is_array ? GgufValueType::kArray : elem, elem, count);
  r.bytes_.assign(bytes.data(), bytes.size());
  return r;
}

std::string GgufValue::type_string() const {
  return is_array() ? "ARRAY[" + gguf_type_name(elem_) + "]" : gguf_type_name(type_);
}

void GgufValue::require(bool array, GgufValueType elem, const std::string& what) const {
  if (is_array() != array || elem_ != elem) {
    const std::string expected =
        array ? "ARRAY[" + gguf_type_name(elem) + "]" : gguf_type_name(elem);
    throw std::runtime_error(what + ": expected " + expected + ", found " + type_string());
  }
}

const std::string& GgufValue::as_string(const std::string& what) const {
  require(false, GgufValueType::kString, what);
  return strings_[0];
}

const std::vector<std::string>& GgufValue::as_string_array(const std::string& what) const {
  require(true, GgufValueType::kString, what);
  return strings_;
}

void GgufMetadata::set(const std::string& key, GgufValue value) {
  const auto it = index_.find(key);
  if (it != index_.end()) {
    entries_[it->second].second = std::move(value);
    return;
  }
  index_[key] = entries_.size();
  entries_.emplace_back(key, std::move(value));
}

bool GgufMetadata::erase(const std::string& key) {
  const auto it = index_.find(key);
  if (it == index_.end()) return false;
  entries_.erase(entries_.begin() + static_cast<std::ptrdiff_t>(it->second));
  index_.clear();
  for (size_t i = 0; i < entries_.size(); ++i) index_[entries_[i].first] = i;
  return true;
}

const GgufValue* GgufMetadata::find(const std::string& key) const {
  const auto it = index_.find(key);
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

const GgufValue& GgufMetadata::at(const std::string& key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) throw std::runtime_error(label(key) + " not found");
  return *v;
}

std::optional<std::string> GgufMetadata::get_string_optional(const std::string& k) const {
  const GgufValue* v = find(k);
  if (v == nullptr) return std::nullopt;
  return v->as_string(label(k));
}

}  // namespace qat::io
