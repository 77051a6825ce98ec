// The machinery behind the recipe config's field table: each section lists its fields once, in a
// function template that a visitor walks,
//
//   template <class V> void visit_fields(V& v, LoraSection& s) {
//     v.field("r", s.r, at_least<int64_t>(1));
//     v.field("targets", s.targets, non_empty());
//   }
//
// and the visitors below read it from YAML (Reader: types, enum names, unknown keys, all errors
// with file:line and key path), write it back (Writer: the resolved config, or only the parts
// that define the experiment, for the resume check), and check the values (Checker). Adding a key
// is one line in one list.
//
// Value types: bool, int64_t, double, std::string, std::vector<std::string>, an enum with an
// EnumNames<E> specialization, or a type with `std::string config_text(const T&)` and
// `std::optional<std::string> config_parse(const std::string& text, T& out)` (returns the error).
#pragma once

#include <c10/util/Exception.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <sstream>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace qat::recipes::config {

// How an enum is written: {value, name} pairs; a value's first name is canonical (what the
// writer emits), later ones are accepted aliases.
template <class E>
struct EnumNames;  // static const std::vector<std::pair<E, const char*>>& get();

template <class E, class = void>
struct is_named_enum : std::false_type {};
template <class E>
struct is_named_enum<E, std::void_t<decltype(EnumNames<E>::get())>> : std::true_type {};

template <class E>
std::string enum_name(E value) {
  for (const auto& [v, name] : EnumNames<E>::get())
    if (v == value) return name;
  TORCH_INTERNAL_ASSERT(false, "an enum value without a name in its EnumNames table");
  return {};
}

template <class E>
std::optional<E> enum_from_name(const std::string& name) {
  for (const auto& [v, n] : EnumNames<E>::get())
    if (name == n) return v;
  return std::nullopt;
}

// "a, b, c": the canonical names, for error messages.
template <class E>
std::string enum_choices() {
  std::string out;
  std::vector<E> seen;
  for (const auto& [v, n] : EnumNames<E>::get()) {
    if (std::find(seen.begin(), seen.end(), v) != seen.end()) continue;
    seen.push_back(v);
    out += (out.empty() ? "" : ", ") + std::string(n);
  }
  return out;
}

// Which part of a run a key belongs to: the experiment (what is trained, on what: a resumed run
// must match it) or the run (steps, schedule, logging, checkpointing: may change on resume).
enum class Part { kExperiment, kRun };

// Value checks: callables returning what is wrong ("must be >= 1") or nothing.
template <class T>
auto at_least(T lo) {
  return [lo](const T& v) -> std::optional<std::string> {
    if (v >= lo) return std::nullopt;
    std::ostringstream s;
    s << "must be >= " << lo;
    return s.str();
  };
}
// In [lo, hi) (hi_open) or [lo, hi].
template <class T>
auto in_range(T lo, T hi, bool hi_open) {
  return [=](const T& v) -> std::optional<std::string> {
    if (v >= lo && (hi_open ? v < hi : v <= hi)) return std::nullopt;
    std::ostringstream s;
    s << "must be in [" << lo << ", " << hi << (hi_open ? ")" : "]");
    return s.str();
  };
}
inline auto non_empty() {
  return [](const auto& v) -> std::optional<std::string> {
    if (!v.empty()) return std::nullopt;
    return std::string("must not be empty");
  };
}

// Reads a section's fields from a YAML mapping; finish() rejects keys nobody asked for.
class Reader {
 public:
  Reader(const YAML::Node& node, std::string path, const std::string& source)
      : node_(node), path_(std::move(path)), source_(source) {
    TORCH_CHECK(!node_.IsDefined() || node_.IsNull() || node_.IsMap(), where(node_), path_,
                ": expected a mapping of keys, found ", kind(node_));
  }

  template <class T, class... Attr>
  void field(const char* key, T& out, Attr&&...) {
    known_.push_back(key);
    if (!node_.IsDefined() || node_.IsNull()) return;
    const YAML::Node v = node_[key];
    if (!v.IsDefined() || v.IsNull()) return;
    read(v, full(key), out);
  }

  template <class S, class... Attr>
  void section(const char* key, S& s, Attr&&...) {
    known_.push_back(key);
    const YAML::Node child =
        (!node_.IsDefined() || node_.IsNull()) ? YAML::Node() : YAML::Node(node_[key]);
    Reader sub(child, full(key), source_);
    visit_fields(sub, s);
    sub.finish();
  }

  void finish() const {
    if (!node_.IsDefined() || node_.IsNull()) return;
    for (const auto& kv : node_) {
      const std::string key = kv.first.as<std::string>();
      if (std::find(known_.begin(), known_.end(), key) != known_.end()) continue;
      std::ostringstream keys;
      for (size_t i = 0; i < known_.size(); ++i) keys << (i ? ", " : "") << known_[i];
      TORCH_CHECK(false, where(kv.first), full(key), ": unknown key (expected one of: ", keys.str(),
                  ")");
    }
  }

  // "file:line: " of a node (or "file: " when it has no position).
  std::string where(const YAML::Node& n) const {
    const YAML::Mark m = n.Mark();
    if (m.line < 0) return source_ + ": ";
    return source_ + ":" + std::to_string(m.line + 1) + ": ";
  }

 private:
  std::string full(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

  static std::string kind(const YAML::Node& n) {
    if (n.IsMap()) return "a mapping";
    if (n.IsSequence()) return "a list";
    if (n.IsScalar()) return "'" + n.Scalar() + "'";
    return "nothing";
  }

  template <typename T>
  T scalar(const YAML::Node& v, const std::string& key, const char* expected) const {
    TORCH_CHECK(v.IsScalar(), where(v), key, ": expected ", expected, ", found ", kind(v));
    try {
      return v.as<T>();
    } catch (const YAML::Exception&) {
      TORCH_CHECK(false, where(v), key, ": expected ", expected, ", found '", v.Scalar(), "'");
    }
    return T{};
  }

  void read(const YAML::Node& v, const std::string& key, std::string& out) const {
    out = scalar<std::string>(v, key, "a string");
  }
  void read(const YAML::Node& v, const std::string& key, bool& out) const {
    out = scalar<bool>(v, key, "true or false");
  }
  void read(const YAML::Node& v, const std::string& key, int64_t& out) const {
    out = scalar<int64_t>(v, key, "an integer");
  }
  void read(const YAML::Node& v, const std::string& key, double& out) const {
    out = scalar<double>(v, key, "a number");
  }
  void read(const YAML::Node& v, const std::string& key, std::vector<std::string>& out) const {
    TORCH_CHECK(v.IsSequence(), where(v), key, ": expected a list of strings, found ", kind(v));
    out.clear();
    for (const auto& item : v) out.push_back(scalar<std::string>(item, key + "[]", "a string"));
  }
  template <class T>
  void read(const YAML::Node& v, const std::string& key, T& out) const {
    if constexpr (std::is_enum_v<T>) {
      const std::string text = scalar<std::string>(v, key, "a name");
      const std::optional<T> e = enum_from_name<T>(text);
      TORCH_CHECK(e, where(v), key, ": expected one of ", enum_choices<T>(), ", found '", text,
                  "'");
      out = *e;
    } else {
      const std::string text = scalar<std::string>(v, key, "a string");
      const std::optional<std::string> error = config_parse(text, out);
      TORCH_CHECK(!error, where(v), key, ": ", error.value_or(""));
    }
  }

  YAML::Node node_;
  std::string path_;
  const std::string& source_;
  std::vector<std::string> known_;
};

// Writes a section's fields as YAML (lists in flow style); with `experiment_only`, leaves out
// what is Part::kRun, which gives the identity of an experiment.
class Writer {
 public:
  explicit Writer(YAML::Emitter& e, bool experiment_only = false)
      : e_(e), experiment_only_(experiment_only) {}

  template <class T, class... Attr>
  void field(const char* key, const T& value, Attr&&... attr) {
    if (skipped(attr...)) return;
    e_ << YAML::Key << key << YAML::Value;
    write(value);
  }

  template <class S, class... Attr>
  void section(const char* key, S& s, Attr&&... attr) {
    if (skipped(attr...)) return;
    e_ << YAML::Key << key << YAML::Value << YAML::BeginMap;
    visit_fields(*this, s);
    e_ << YAML::EndMap;
  }

 private:
  template <class... Attr>
  bool skipped(const Attr&... attr) const {
    return experiment_only_ && (is_run(attr) || ...);
  }
  template <class A>
  static bool is_run(const A& a) {
    if constexpr (std::is_same_v<A, Part>)
      return a == Part::kRun;
    else
      return false;
  }

  void write(const std::string& v) { e_ << v; }
  void write(bool v) { e_ << v; }
  void write(int64_t v) { e_ << v; }
  void write(double v) { e_ << v; }
  void write(const std::vector<std::string>& v) {
    e_ << YAML::Flow << YAML::BeginSeq;
    for (const auto& s : v) e_ << s;
    e_ << YAML::EndSeq;
  }
  template <class T>
  void write(const T& v) {
    if constexpr (std::is_enum_v<T>)
      e_ << enum_name(v);
    else
      e_ << config_text(v);
  }

  YAML::Emitter& e_;
  bool experiment_only_;
};

// Runs each field's check; the first failure throws "<at><key path> <what>, got <value>".
class Checker {
 public:
  Checker(std::string at, std::string path = "") : at_(std::move(at)), path_(std::move(path)) {}

  template <class T, class... Attr>
  void field(const char* key, const T& value, Attr&&... attr) {
    (void)key;  // unused when the field has no check
    (void)value;
    (check(key, value, attr), ...);
  }

  template <class S, class... Attr>
  void section(const char* key, S& s, Attr&&...) {
    Checker sub(at_, full(key));
    visit_fields(sub, s);
  }

 private:
  std::string full(const std::string& key) const { return path_.empty() ? key : path_ + "." + key; }

  template <class T, class A>
  void check(const char* key, const T& value, const A& attr) {
    if constexpr (std::is_invocable_v<const A&, const T&>) {
      const std::optional<std::string> what = attr(value);
      if (!what) return;
      std::ostringstream got;
      if constexpr (std::is_arithmetic_v<T>)
        got << ", got " << value;
      else if constexpr (std::is_same_v<T, std::string>)
        got << ", got '" << value << "'";
      TORCH_CHECK(false, at_, full(key), " ", *what, got.str());
    }
  }

  std::string at_;
  std::string path_;
};

}  // namespace qat::recipes::config
