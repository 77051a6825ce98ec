#include "qat/io/safetensors.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "qat/io/byte_cursor.h"

namespace qat::io {

namespace {

using Json = nlohmann::json;

std::string fmt_shape(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

// JSON of `v` for an error message, cut short so a 100 MB value does not flood the log.
std::string excerpt(const Json& v) {
  std::string s = v.dump();
  return s.size() > 80 ? s.substr(0, 77) + "..." : s;
}

class HeaderError {
 public:
  explicit HeaderError(const std::string& origin) : origin_(origin) {}
  [[noreturn]] void operator()(const std::string& what) const {
    throw std::runtime_error(origin_ + ": safetensors: " + what);
  }

 private:
  const std::string& origin_;
};

// Parses the JSON, rejecting duplicate keys at any level (nlohmann would silently keep the last
// one) and nesting deeper than the format has (object > tensor object > shape array), which also
// bounds the parser's work on adversarial input.
Json parse_json(std::string_view text, const HeaderError& fail) {
  std::vector<std::set<std::string>> keys;
  auto callback = [&](int depth, Json::parse_event_t event, Json& parsed) {
    if (depth > 3)
      fail("the header nests deeper than 3 levels; the format has name -> {shape: []}");
    switch (event) {
      case Json::parse_event_t::object_start:
        keys.emplace_back();
        break;
      case Json::parse_event_t::object_end:
        keys.pop_back();
        break;
      case Json::parse_event_t::key: {
        const std::string& k = parsed.get_ref<const std::string&>();
        if (!keys.back().insert(k).second) fail("duplicate key \"" + k + "\" in the header");
        break;
      }
      default:
        break;
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/true);
  } catch (const Json::exception& e) {
    fail(std::string("the header is not valid UTF-8 JSON: ") + e.what());
  }
}

uint64_t as_u64(const Json& v, const std::string& what, const HeaderError& fail) {
  if (!v.is_number_unsigned())
    fail(what + ": expected a non-negative integer, found " + excerpt(v));
  return v.get<uint64_t>();
}

SafetensorsTensorInfo parse_tensor(const std::string& name, const Json& v,
                                   const HeaderError& fail) {
  const std::string where = "tensor \"" + name + "\"";
  if (!v.is_object())
    fail(where + ": expected an object {dtype, shape, data_offsets}, found " + excerpt(v));
  SafetensorsTensorInfo t;
  t.name = name;
  for (const char* field : {"dtype", "shape", "data_offsets"}) {
    if (!v.contains(field)) fail(where + ": missing \"" + field + "\"");
  }
  const Json& dt = v["dtype"];
  if (!dt.is_string()) fail(where + ": dtype: expected a string, found " + excerpt(dt));
  const auto dtype = safetensors_dtype_from_name(dt.get_ref<const std::string&>());
  if (!dtype) fail(where + ": unknown dtype \"" + dt.get<std::string>() + "\"");
  t.dtype = *dtype;
  const Json& shape = v["shape"];
  if (!shape.is_array()) fail(where + ": shape: expected an array, found " + excerpt(shape));
  for (size_t i = 0; i < shape.size(); ++i) {
    const uint64_t d = as_u64(shape[i], where + ": shape[" + std::to_string(i) + "]", fail);
    if (d > static_cast<uint64_t>(INT64_MAX)) {
      fail(where + ": shape[" + std::to_string(i) + "] = " + std::to_string(d) + " exceeds int64");
    }
    t.shape.push_back(static_cast<int64_t>(d));
  }
  const Json& off = v["data_offsets"];
  if (!off.is_array() || off.size() != 2) {
    fail(where + ": data_offsets: expected [begin, end], found " + excerpt(off));
  }
  t.begin = as_u64(off[0], where + ": data_offsets[0]", fail);
  t.end = as_u64(off[1], where + ": data_offsets[1]", fail);
  return t;
}

}  // namespace

std::optional<SafetensorsDtype> safetensors_dtype_from_name(std::string_view name) {
  for (int i = 0; i < kNumSafetensorsDtypes; ++i) {
    if (kSafetensorsDtypes[i].name == name) return static_cast<SafetensorsDtype>(i);
  }
  return std::nullopt;
}

std::optional<uint64_t> safetensors_nbytes(SafetensorsDtype dtype,
                                           const std::vector<int64_t>& shape) {
  uint64_t n = 1;
  for (int64_t d : shape) {
    if (d < 0 || !checked_mul(n, static_cast<uint64_t>(d), &n)) return std::nullopt;
  }
  uint64_t bits = 0;
  if (!checked_mul(n, static_cast<uint64_t>(traits(dtype).bits), &bits) || bits % 8 != 0) {
    return std::nullopt;
  }
  return bits / 8;
}

const SafetensorsTensorInfo* SafetensorsHeader::find(const std::string& name) const {
  const auto it = index_.find(name);
  return it == index_.end() ? nullptr : &tensors[it->second];
}

SafetensorsHeader parse_safetensors(const uint8_t* data, size_t size, const std::string& origin) {
  const HeaderError fail(origin);
  if (size < 8) {
    fail("truncated: the file has " + std::to_string(size) +
         " bytes, expected at least 8 (header length)");
  }
  ByteCursor cur(data, size, origin);
  const uint64_t n = cur.read<uint64_t>("header length");
  if (n > kSafetensorsMaxHeaderBytes) {
    fail("header length " + std::to_string(n) + " exceeds the limit of " +
         std::to_string(kSafetensorsMaxHeaderBytes) + " bytes");
  }
  if (n > cur.remaining()) {
    fail("header length " + std::to_string(n) + " runs past the end of the file (8 + " +
         std::to_string(n) + " > file size " + std::to_string(size) + ")");
  }
  const std::string_view text = cur.read_bytes(n, "header");
  const Json root = parse_json(text, fail);
  if (!root.is_object()) fail("the header must be a JSON object, found " + excerpt(root));

  SafetensorsHeader h;
  h.data_start = 8 + n;
  for (const auto& [key, value] : root.items()) {
    if (key == "__metadata__") {
      if (!value.is_object())
        fail("__metadata__: expected an object of strings, found " + excerpt(value));
      for (const auto& [mk, mv] : value.items()) {
        if (!mv.is_string()) {
          fail("__metadata__[\"" + mk + "\"]: expected a string value, found " + excerpt(mv));
        }
        h.metadata[mk] = mv.get<std::string>();
      }
      continue;
    }
    h.index_[key] = h.tensors.size();  // keys are unique: parse_json rejected duplicates
    h.tensors.push_back(parse_tensor(key, value, fail));
  }

  // Sorted by offsets, the tensors must tile [0, data size) exactly: no gaps, no overlaps.
  std::vector<const SafetensorsTensorInfo*> by_offset;
  for (const auto& t : h.tensors) by_offset.push_back(&t);
  std::sort(by_offset.begin(), by_offset.end(), [](const auto* a, const auto* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  uint64_t expected_begin = 0;
  for (const SafetensorsTensorInfo* t : by_offset) {
    const std::string where = "tensor \"" + t->name + "\"";
    const std::string offs = "[" + std::to_string(t->begin) + ", " + std::to_string(t->end) + "]";
    if (t->begin != expected_begin) {
      fail(where + ": data_offsets " + offs + " should begin at " + std::to_string(expected_begin) +
           (t->begin < expected_begin ? " (it overlaps the previous tensor)"
                                      : " (it leaves a gap)"));
    }
    if (t->end < t->begin) fail(where + ": data_offsets " + offs + " end before they begin");
    const auto nbytes = safetensors_nbytes(t->dtype, t->shape);
    if (!nbytes) {
      fail(where + ": " + std::string(traits(t->dtype).name) + " " + fmt_shape(t->shape) +
           " has no whole byte size (overflow or a partial byte)");
    }
    if (t->end - t->begin != *nbytes) {
      fail(where + ": data_offsets " + offs + " span " + std::to_string(t->end - t->begin) +
           " bytes, expected " + std::to_string(*nbytes) + " for " +
           std::string(traits(t->dtype).name) + " " + fmt_shape(t->shape));
    }
    expected_begin = t->end;
  }
  if (expected_begin != cur.remaining()) {
    fail("the tensors cover " + std::to_string(expected_begin) + " data bytes but the file has " +
         std::to_string(cur.remaining()) + " after the header (8 + " + std::to_string(n) + " + " +
         std::to_string(expected_begin) + " != file size " + std::to_string(size) + ")");
  }
  return h;
}

SafetensorsLayout plan_safetensors(const std::vector<SafetensorsEntry>& entries,
                                   const std::map<std::string, std::string>& metadata) {
  const auto fail = [](const std::string& what) {
    throw std::runtime_error("safetensors writer: " + what);
  };
  std::vector<const SafetensorsEntry*> order;
  std::set<std::string_view> names;
  for (const auto& e : entries) {
    if (e.name == "__metadata__") fail("\"__metadata__\" is reserved and cannot name a tensor");
    if (!names.insert(e.name).second) fail("duplicate tensor name \"" + e.name + "\"");
    order.push_back(&e);
  }
  // The reference writer's order: dtype descending (largest alignment first), then name.
  std::sort(order.begin(), order.end(), [](const auto* a, const auto* b) {
    return a->dtype != b->dtype ? a->dtype > b->dtype : a->name < b->name;
  });

  nlohmann::ordered_json meta = nlohmann::ordered_json::object();
  meta["format"] = "pt";
  for (const auto& [k, v] : metadata) {
    if (k == "format" && v != "pt") fail("metadata \"format\" must be \"pt\", got \"" + v + "\"");
    meta[k] = v;
  }
  nlohmann::ordered_json root = nlohmann::ordered_json::object();
  root["__metadata__"] = meta;

  SafetensorsLayout layout;
  uint64_t offset = 0;
  for (const SafetensorsEntry* e : order) {
    const auto nbytes = safetensors_nbytes(e->dtype, e->shape);
    if (!nbytes)
      fail("tensor \"" + e->name + "\": shape " + fmt_shape(e->shape) + " has no whole byte size");
    SafetensorsTensorInfo t;
    t.name = e->name;
    t.dtype = e->dtype;
    t.shape = e->shape;
    t.begin = offset;
    if (!checked_add(offset, *nbytes, &t.end)) fail("total size overflows");
    offset = t.end;
    root[e->name] = {{"dtype", std::string(traits(e->dtype).name)},
                     {"shape", e->shape},
                     {"data_offsets", {t.begin, t.end}}};
    layout.tensors.push_back(std::move(t));
  }
  std::string json = root.dump();
  json.append((8 - json.size() % 8) % 8, ' ');
  const uint64_t n = json.size();
  layout.header_bytes.assign(reinterpret_cast<const char*>(&n), 8);
  layout.header_bytes += json;
  layout.data_bytes = offset;
  return layout;
}

}  // namespace qat::io
