#include "data/tokenizer/jinja/interpreter.h"

#include <cmath>

namespace qat::data::jinja {

namespace {

// Nesting beyond this is a hostile or broken template, not a chat format.
constexpr int kMaxDepth = 200;

struct DepthGuard {
  DepthGuard(Interpreter& in, int& depth, size_t pos) : depth_(depth) {
    if (++depth_ > kMaxDepth) in.fail(pos, "template nested too deeply");
  }
  ~DepthGuard() { --depth_; }
  int& depth_;
};

int64_t floor_div(Interpreter& in, size_t pos, int64_t a, int64_t b) {
  if (b == 0) in.fail(pos, "integer division or modulo by zero");
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}

}  // namespace

Interpreter::Interpreter(std::string_view source, Dict globals) : src_(source) {
  scopes_.push_back(std::move(globals));
}

void Interpreter::fail(size_t pos, const std::string& msg) const {
  throw TemplateError("chat template: " + msg + " at " + describe_position(src_, pos));
}

std::string Interpreter::render(const Body& body) {
  std::string out;
  exec(body, out);
  return out;
}

Value Interpreter::lookup(const std::string& name) const {
  for (auto s = scopes_.rbegin(); s != scopes_.rend(); ++s)
    for (const auto& kv : *s)
      if (kv.first == name) return kv.second;
  return Value::undefined(name);
}

void Interpreter::assign(const std::string& name, Value v) {
  for (auto& kv : scopes_.back()) {
    if (kv.first == name) {
      kv.second = std::move(v);
      return;
    }
  }
  scopes_.back().emplace_back(name, std::move(v));
}

Interpreter::Flow Interpreter::exec(const Body& body, std::string& out) {
  for (const NodePtr& n : body) {
    DepthGuard guard(*this, depth_, n->pos);
    switch (n->kind) {
      case Node::Kind::kText:
        out += n->text;
        break;
      case Node::Kind::kOutput:
        out += eval(*n->expr).str();
        break;
      case Node::Kind::kIf:
        for (const auto& [cond, branch] : n->branches) {
          if (!cond || eval(*cond).truthy()) {
            const Flow f = exec(branch, out);
            if (f != Flow::kNormal) return f;
            break;
          }
        }
        break;
      case Node::Kind::kFor: {
        const Flow f = exec_for(*n, out);
        if (f != Flow::kNormal) return f;
        break;
      }
      case Node::Kind::kSet: {
        Value v = eval(*n->expr);
        if (!n->attr.empty()) {
          const Value target = lookup(n->targets[0]);
          if (!target.is_dict()) {
            fail(n->pos, "cannot assign attribute '" + n->attr + "' of '" + n->targets[0] +
                             "' (a " + target.type_name() + "; use namespace())");
          }
          target.set(n->attr, std::move(v));
        } else if (n->targets.size() == 1) {
          assign(n->targets[0], std::move(v));
        } else {
          const List items = iterate(*this, n->pos, v);
          if (items.size() != n->targets.size()) fail(n->pos, "wrong number of values to unpack");
          for (size_t i = 0; i < items.size(); ++i) assign(n->targets[i], items[i]);
        }
        break;
      }
      case Node::Kind::kSetBlock: {
        std::string captured;
        exec(n->body, captured);
        assign(n->targets[0], Value(std::move(captured)));
        break;
      }
      case Node::Kind::kBreak:
        return Flow::kBreak;
      case Node::Kind::kContinue:
        return Flow::kContinue;
    }
  }
  return Flow::kNormal;
}

Interpreter::Flow Interpreter::exec_for(const Node& n, std::string& out) {
  List items = iterate(*this, n.pos, eval(*n.expr));
  auto bind = [&](const Value& item) {
    if (n.targets.size() == 1) {
      assign(n.targets[0], item);
      return;
    }
    const List parts = iterate(*this, n.pos, item);
    if (parts.size() != n.targets.size()) fail(n.pos, "wrong number of values to unpack in for");
    for (size_t i = 0; i < parts.size(); ++i) assign(n.targets[i], parts[i]);
  };
  if (n.filter) {  // "for x in xs if cond": filter first, so loop.* counts the kept items
    List kept;
    for (const Value& item : items) {
      scopes_.emplace_back();
      bind(item);
      const bool keep = eval(*n.filter).truthy();
      scopes_.pop_back();
      if (keep) kept.push_back(item);
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    scopes_.emplace_back();
    exec(n.else_body, out);
    scopes_.pop_back();
    return Flow::kNormal;
  }
  const auto len = static_cast<int64_t>(items.size());
  for (int64_t i = 0; i < len; ++i) {
    Dict loop = {{"index0", Value(i)},
                 {"index", Value(i + 1)},
                 {"revindex0", Value(len - i - 1)},
                 {"revindex", Value(len - i)},
                 {"first", Value(i == 0)},
                 {"last", Value(i == len - 1)},
                 {"length", Value(len)},
                 {"previtem", i > 0 ? items[i - 1] : Value::undefined("previtem")},
                 {"nextitem", i + 1 < len ? items[i + 1] : Value::undefined("nextitem")}};
    loop.emplace_back("cycle", Value::function("loop.cycle", [i](const Args& a, const Kwargs&) {
                        return a.empty() ? Value::none() : a[static_cast<size_t>(i) % a.size()];
                      }));
    scopes_.emplace_back();  // jinja2: nothing set in an iteration survives it
    assign("loop", Value(std::move(loop)));
    bind(items[i]);
    const Flow f = exec(n.body, out);
    scopes_.pop_back();
    if (f == Flow::kBreak) break;
  }
  return Flow::kNormal;
}

Value Interpreter::eval(const Expr& e) {
  DepthGuard guard(*this, depth_, e.pos);
  switch (e.kind) {
    case Expr::Kind::kLiteral:
      return e.literal;
    case Expr::Kind::kName:
      return lookup(e.name);
    case Expr::Kind::kList: {
      List l;
      for (const auto& a : e.args) l.push_back(eval(*a));
      return Value(std::move(l));
    }
    case Expr::Kind::kDict: {
      Value d{Dict{}};
      for (const auto& [k, v] : e.items) {
        const Value key = eval(*k);
        if (!key.is_string()) fail(k->pos, "dict keys must be strings, found " + key.type_name());
        d.set(key.as_string(), eval(*v));
      }
      return d;
    }
    case Expr::Kind::kAttr:
      return attribute(*this, e.pos, eval(*e.a), e.name);
    case Expr::Kind::kItem:
      return subscript(*this, e.pos, eval(*e.a), eval(*e.b));
    case Expr::Kind::kSlice: {
      auto part = [&](int k) { return e.args[k] ? eval(*e.args[k]) : Value::none(); };
      return slice(*this, e.pos, eval(*e.a), part(0), part(1), part(2));
    }
    case Expr::Kind::kCall:
      return call(e);
    case Expr::Kind::kFilter: {
      const Value v = eval(*e.a);
      Args args;
      Kwargs kwargs;
      for (const auto& a : e.args) args.push_back(eval(*a));
      for (const auto& [k, a] : e.kwargs) kwargs.emplace_back(k, eval(*a));
      return apply_filter(*this, e.pos, e.name, v, args, kwargs);
    }
    case Expr::Kind::kTest: {
      const Value v = eval(*e.a);
      Args args;
      for (const auto& a : e.args) args.push_back(eval(*a));
      return Value(apply_test(*this, e.pos, e.name, v, args) != e.negated);
    }
    case Expr::Kind::kNot:
      return Value(!eval(*e.a).truthy());
    case Expr::Kind::kNeg: {
      const Value v = eval(*e.a);
      if (v.kind() == Value::Kind::kFloat) return Value(-v.as_float());
      if (v.is_number() || v.kind() == Value::Kind::kBool) return Value(-v.as_int());
      fail(e.pos, "bad operand type for unary -: '" + v.type_name() + "'");
    }
    case Expr::Kind::kAnd: {  // Python: returns the deciding operand
      Value a = eval(*e.a);
      return a.truthy() ? eval(*e.b) : a;
    }
    case Expr::Kind::kOr: {
      Value a = eval(*e.a);
      return a.truthy() ? a : eval(*e.b);
    }
    case Expr::Kind::kTernary:
      if (eval(*e.b).truthy()) return eval(*e.a);
      return e.c ? eval(*e.c) : Value::undefined("ternary else");
    case Expr::Kind::kBinary:
      return binary(e.name, false, eval(*e.a), eval(*e.b), e.pos);
    case Expr::Kind::kCompare: {
      Value left = eval(*e.a);
      for (size_t i = 0; i < e.ops.size(); ++i) {
        Value right = eval(*e.args[i]);
        const bool negated = e.ops[i] == "not in";
        if (!binary(negated ? "in" : e.ops[i], negated, left, right, e.pos).truthy()) {
          return Value(false);
        }
        left = std::move(right);
      }
      return Value(true);
    }
  }
  fail(e.pos, "unknown expression");
}

Value Interpreter::call(const Expr& e) {
  const Value fn = eval(*e.a);
  if (fn.kind() != Value::Kind::kFunction) {
    const std::string what = e.a->kind == Expr::Kind::kName || e.a->kind == Expr::Kind::kAttr
                                 ? "'" + e.a->name + "'"
                                 : "a " + fn.type_name();
    fail(e.pos, fn.is_undefined() ? what + " is undefined (unsupported function or method)"
                                  : what + " is not callable");
  }
  Args args;
  Kwargs kwargs;
  for (const auto& a : e.args) args.push_back(eval(*a));
  for (const auto& [k, a] : e.kwargs) kwargs.emplace_back(k, eval(*a));
  try {
    return fn.call(args, kwargs);
  } catch (const TemplateError&) {
    throw;
  } catch (const std::exception& ex) {
    fail(e.pos, fn.function_name() + "(): " + ex.what());
  }
}

Value Interpreter::binary(const std::string& op, bool negated, const Value& a, const Value& b,
                          size_t pos) {
  if (op == "==") return Value(a.equals(b));
  if (op == "!=") return Value(!a.equals(b));
  if (op == "~") return Value(a.str() + b.str());
  if (op == "in") {
    bool found = false;
    if (b.is_string()) {
      if (!a.is_string()) fail(pos, "'in <string>' requires a string on the left");
      found = b.as_string().find(a.as_string()) != std::string::npos;
    } else if (b.is_dict()) {
      found = a.is_string() && b.find(a.as_string()) != nullptr;
    } else if (b.is_list()) {
      for (const Value& x : b.list()) found = found || x.equals(a);
    } else if (!b.is_undefined()) {
      fail(pos, "argument of type '" + b.type_name() + "' is not iterable");
    }
    return Value(found != negated);
  }
  const bool nums = (a.is_number() || a.kind() == Value::Kind::kBool) &&
                    (b.is_number() || b.kind() == Value::Kind::kBool);
  const bool floats = a.kind() == Value::Kind::kFloat || b.kind() == Value::Kind::kFloat;
  if (op == "<" || op == ">" || op == "<=" || op == ">=") {
    int cmp;
    if (nums) {
      const double x = a.as_float(), y = b.as_float();
      cmp = x < y ? -1 : x > y ? 1 : 0;
    } else if (a.is_string() && b.is_string()) {
      cmp = a.as_string().compare(b.as_string());  // UTF-8 byte order == code point order
    } else {
      fail(pos, "'" + op + "' not supported between '" + a.type_name() + "' and '" + b.type_name() +
                    "'");
    }
    return Value(op == "<" ? cmp < 0 : op == ">" ? cmp > 0 : op == "<=" ? cmp <= 0 : cmp >= 0);
  }
  if (op == "+") {
    if (a.is_string() && b.is_string()) return Value(a.as_string() + b.as_string());
    if (a.is_list() && b.is_list()) {
      List l = a.list();
      l.insert(l.end(), b.list().begin(), b.list().end());
      return Value(std::move(l));
    }
  }
  if (op == "*" && (a.is_string() || a.is_list()) && b.kind() == Value::Kind::kInt) {
    if (a.is_string()) {
      std::string s;
      for (int64_t i = 0; i < b.as_int() && s.size() < (1u << 24); ++i) s += a.as_string();
      return Value(std::move(s));
    }
    List l;
    for (int64_t i = 0; i < b.as_int() && l.size() < (1u << 20); ++i)
      l.insert(l.end(), a.list().begin(), a.list().end());
    return Value(std::move(l));
  }
  if (!nums) {
    fail(pos, "unsupported operand types for " + op + ": '" + a.type_name() + "' and '" +
                  b.type_name() + "'");
  }
  if (op == "/") {
    if (b.as_float() == 0.0) fail(pos, "division by zero");
    return Value(a.as_float() / b.as_float());
  }
  if (op == "**") {
    if (!floats && b.as_int() >= 0) {
      int64_t r = 1;
      for (int64_t i = 0; i < b.as_int() && i < 64; ++i) r *= a.as_int();
      return Value(r);
    }
    return Value(std::pow(a.as_float(), b.as_float()));
  }
  if (floats) {
    const double x = a.as_float(), y = b.as_float();
    if (op == "+") return Value(x + y);
    if (op == "-") return Value(x - y);
    if (op == "*") return Value(x * y);
    if (y == 0.0) fail(pos, "float division or modulo by zero");
    if (op == "//") return Value(std::floor(x / y));
    const double m = std::fmod(x, y);  // Python's modulo takes the divisor's sign
    return Value(m != 0.0 && ((m < 0) != (y < 0)) ? m + y : m);
  }
  const int64_t x = a.as_int(), y = b.as_int();
  if (op == "+") return Value(x + y);
  if (op == "-") return Value(x - y);
  if (op == "*") return Value(x * y);
  if (op == "//") return Value(floor_div(*this, pos, x, y));
  return Value(x - floor_div(*this, pos, x, y) * y);  // %
}

}  // namespace qat::data::jinja
