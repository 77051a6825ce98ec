// Evaluates a parsed template against a context, with jinja2's scoping (each for-loop
// iteration has its own scope; namespace() objects carry values out of loops).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "data/tokenizer/jinja/ast.h"

namespace qat::data::jinja {

class Interpreter {
 public:
  Interpreter(std::string_view source, Dict globals);
  std::string render(const Body& body);

  [[noreturn]] void fail(size_t pos, const std::string& msg) const;
  Value eval(const Expr& e);

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  Flow exec(const Body& body, std::string& out);
  Flow exec_for(const Node& node, std::string& out);
  Value lookup(const std::string& name) const;
  void assign(const std::string& name, Value v);
  Value binary(const std::string& op, bool negated, const Value& a, const Value& b, size_t pos);
  Value call(const Expr& e);

  std::string_view src_;
  std::vector<Dict> scopes_;  // scopes_[0] holds the globals and the caller's variables
  int depth_ = 0;             // recursion guard for pathological templates
};

// Built-ins (builtins.cpp). `pos` locates errors through `in`.
Value attribute(Interpreter& in, size_t pos, const Value& obj, const std::string& name);
Value subscript(Interpreter& in, size_t pos, const Value& obj, const Value& key);
Value slice(Interpreter& in, size_t pos, const Value& obj, const Value& start, const Value& stop,
            const Value& step);
Value apply_filter(Interpreter& in, size_t pos, const std::string& name, const Value& v,
                   const Args& args, const Kwargs& kwargs);
bool apply_test(Interpreter& in, size_t pos, const std::string& name, const Value& v,
                const Args& args);
// Argument i of a call, or its keyword `name` when given (keywords first); Undefined when absent.
const Value& arg(const Args& a, size_t i, const Kwargs& kw = {}, const char* name = nullptr);
// `s` without leading and trailing `chars` (whitespace when Undefined), as Python's str.strip.
std::string strip_string(const std::string& s, const Value& chars);
// The items a for loop visits: list items, dict keys, string characters; Undefined is empty.
List iterate(Interpreter& in, size_t pos, const Value& v);
Dict default_globals();

}  // namespace qat::data::jinja
