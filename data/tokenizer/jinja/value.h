// Values of the Jinja subset: Python-like none/bool/int/float/str/list/dict, jinja2's Undefined,
// and built-in callables. Lists and dicts are shared (namespace() attributes are assigned
// through a shared dict), everything else is a plain value.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace qat::data::jinja {

// Every rendering or parsing failure; the message names the construct and the position.
class TemplateError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Value;
using List = std::vector<Value>;
using Dict = std::vector<std::pair<std::string, Value>>;  // insertion-ordered, like Python
using Args = std::vector<Value>;
using Kwargs = std::vector<std::pair<std::string, Value>>;
using Function = std::function<Value(const Args&, const Kwargs&)>;

class Value {
 public:
  enum class Kind { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kDict, kFunction };

  Value() = default;  // Undefined
  static Value undefined(std::string name) {
    Value v;
    v.str_ = std::move(name);
    return v;
  }
  static Value none() { return Value(Kind::kNone); }
  Value(bool b) : kind_(Kind::kBool), int_(b) {}       // NOLINT: implicit like Python literals
  Value(int64_t i) : kind_(Kind::kInt), int_(i) {}     // NOLINT
  Value(int i) : kind_(Kind::kInt), int_(i) {}         // NOLINT
  Value(double f) : kind_(Kind::kFloat), float_(f) {}  // NOLINT
  Value(std::string s) : kind_(Kind::kString), str_(std::move(s)) {}                  // NOLINT
  Value(const char* s) : kind_(Kind::kString), str_(s) {}                             // NOLINT
  Value(List l) : kind_(Kind::kList), list_(std::make_shared<List>(std::move(l))) {}  // NOLINT
  Value(Dict d) : kind_(Kind::kDict), dict_(std::make_shared<Dict>(std::move(d))) {}  // NOLINT
  static Value function(std::string name, Function f);
  static Value from_json(const nlohmann::ordered_json& j);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_number() const { return kind_ == Kind::kInt || kind_ == Kind::kFloat; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_dict() const { return kind_ == Kind::kDict; }

  bool as_bool() const { return int_ != 0; }
  int64_t as_int() const { return int_; }
  double as_float() const { return kind_ == Kind::kFloat ? float_ : static_cast<double>(int_); }
  const std::string& as_string() const { return str_; }
  // The undefined variable's name (for error messages).
  const std::string& undefined_name() const { return str_; }
  List& list() const { return *list_; }
  Dict& dict() const { return *dict_; }
  const std::string& function_name() const { return str_; }
  Value call(const Args& args, const Kwargs& kwargs) const { return (*fn_)(args, kwargs); }

  // Dict lookup; nullptr when absent.
  const Value* find(const std::string& key) const;
  void set(const std::string& key, Value v) const;

  // Python truthiness (Undefined is false).
  bool truthy() const;
  // str(x) as jinja2 prints it ({{ x }}): Undefined is "", None is "None", lists use repr.
  std::string str() const;
  // Python's repr(x).
  std::string repr() const;
  // json.dumps(x, ensure_ascii=False) with transformers' defaults; indent < 0 means none.
  std::string to_json(int indent = -1, int depth = 0) const;
  // Python ==.
  bool equals(const Value& other) const;
  std::string type_name() const;

 private:
  explicit Value(Kind k) : kind_(k) {}
  Kind kind_ = Kind::kUndefined;
  int64_t int_ = 0;
  double float_ = 0;
  std::string str_;
  std::shared_ptr<List> list_;
  std::shared_ptr<Dict> dict_;
  std::shared_ptr<Function> fn_;
};

// Python's repr of a float: shortest round-trip digits, "1.0", "1e+16", "1e-05".
std::string float_repr(double f);

}  // namespace qat::data::jinja
