// The filters of the Jinja subset ({{ x | name(args) }}), as jinja2 defines them, with
// transformers' tojson (json.dumps: ensure_ascii=False, keys in insertion order).
#include <algorithm>
#include <cmath>
#include <set>

#include "data/tokenizer/jinja/interpreter.h"

namespace qat::data::jinja {

namespace {

size_t length(Interpreter& in, size_t pos, const Value& v) {
  if (v.is_string()) {
    size_t n = 0;
    for (unsigned char c : v.as_string()) n += (c & 0xC0) != 0x80;
    return n;
  }
  return iterate(in, pos, v).size();
}

// The attribute path "a.b" of selectattr/map, resolved with jinja2's item-then-attribute rule.
Value path(Interpreter& in, size_t pos, Value v, const std::string& dotted) {
  size_t b = 0;
  while (true) {
    const size_t e = dotted.find('.', b);
    const std::string part = dotted.substr(b, e == std::string::npos ? std::string::npos : e - b);
    if (v.is_undefined()) return v;
    v = subscript(in, pos, v, Value(part));
    if (e == std::string::npos) return v;
    b = e + 1;
  }
}

}  // namespace

Value apply_filter_impl(Interpreter& in, size_t pos, const std::string& name, const Value& v,
                        const Args& args, const Kwargs& kwargs) {
  using K = Value::Kind;
  if (name == "trim") return Value(strip_string(v.str(), arg(args, 0, kwargs, "chars")));
  if (name == "length" || name == "count") return Value(static_cast<int64_t>(length(in, pos, v)));
  if (name == "string") return Value(v.str());
  if (name == "safe" || name == "e" || name == "escape") {
    if (name != "safe") in.fail(pos, "unsupported filter '" + name + "' (autoescape is off)");
    return v;
  }
  if (name == "tojson") {
    const Value& indent = arg(args, 0, kwargs, "indent");
    return Value(v.to_json(indent.kind() == K::kInt ? static_cast<int>(indent.as_int()) : -1));
  }
  if (name == "upper" || name == "lower" || name == "title" || name == "capitalize") {
    return attribute(in, pos, Value(v.str()), name).call({}, {});
  }
  if (name == "replace") {
    return attribute(in, pos, Value(v.str()), "replace").call(args, {});
  }
  if (name == "default" || name == "d") {
    const bool boolean = arg(args, 1, kwargs, "boolean").truthy();
    const bool use_default = v.is_undefined() || (boolean && !v.truthy());
    return use_default ? (args.empty() ? Value("") : args[0]) : v;
  }
  if (name == "first" || name == "last") {
    const List items = iterate(in, pos, v);
    if (items.empty()) return Value::undefined(name);
    return name == "first" ? items.front() : items.back();
  }
  if (name == "list") return Value(iterate(in, pos, v));
  if (name == "reverse") {
    if (v.is_string()) {
      List chars = iterate(in, pos, v);
      std::string s;
      for (auto it = chars.rbegin(); it != chars.rend(); ++it) s += it->as_string();
      return Value(s);
    }
    List items = iterate(in, pos, v);
    std::reverse(items.begin(), items.end());
    return Value(std::move(items));
  }
  if (name == "items") {
    if (!v.is_dict()) in.fail(pos, "filter 'items' needs a mapping, found " + v.type_name());
    return attribute(in, pos, v, "items").call({}, {});
  }
  if (name == "join") {
    const std::string sep =
        arg(args, 0, kwargs, "d").is_undefined() ? "" : arg(args, 0, kwargs, "d").str();
    const Value& attr = arg(args, 1, kwargs, "attribute");
    std::string out;
    bool first = true;
    for (const Value& x : iterate(in, pos, v)) {
      out += (first ? "" : sep) + (attr.is_string() ? path(in, pos, x, attr.as_string()) : x).str();
      first = false;
    }
    return Value(out);
  }
  if (name == "int") {
    if (v.kind() == K::kInt || v.kind() == K::kBool) return Value(v.as_int());
    if (v.kind() == K::kFloat) return Value(static_cast<int64_t>(std::trunc(v.as_float())));
    if (v.is_string()) {
      try {
        size_t used = 0;
        const int64_t i = std::stoll(strip_string(v.as_string(), Value()), &used);
        return Value(i);
      } catch (const std::exception&) {
      }
    }
    const Value& d = arg(args, 0, kwargs, "default");
    return d.is_undefined() ? Value(int64_t{0}) : d;
  }
  if (name == "float") {
    if (v.is_number() || v.kind() == K::kBool) return Value(v.as_float());
    if (v.is_string()) {
      try {
        return Value(std::stod(v.as_string()));
      } catch (const std::exception&) {
      }
    }
    return Value(0.0);
  }
  if (name == "abs") {
    if (v.kind() == K::kFloat) return Value(std::fabs(v.as_float()));
    if (v.kind() == K::kInt || v.kind() == K::kBool)
      return Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
    in.fail(pos, "filter 'abs' needs a number, found " + v.type_name());
  }
  if (name == "unique") {
    List out;
    for (const Value& x : iterate(in, pos, v)) {
      bool seen = false;
      for (const Value& y : out) seen = seen || y.equals(x);
      if (!seen) out.push_back(x);
    }
    return Value(std::move(out));
  }
  if (name == "map") {
    const Value& attr = arg(args, 99, kwargs, "attribute");
    List out;
    for (const Value& x : iterate(in, pos, v)) {
      if (attr.is_string()) {
        Value r = path(in, pos, x, attr.as_string());
        if (r.is_undefined() && kwargs.size() > 1) r = arg(args, 99, kwargs, "default");
        out.push_back(r);
      } else if (!args.empty() && args[0].is_string()) {
        out.push_back(
            apply_filter(in, pos, args[0].as_string(), x, Args(args.begin() + 1, args.end()), {}));
      } else {
        in.fail(pos, "filter 'map' needs attribute= or a filter name");
      }
    }
    return Value(std::move(out));
  }
  if (name == "selectattr" || name == "rejectattr" || name == "select" || name == "reject") {
    const bool by_attr = name == "selectattr" || name == "rejectattr";
    const bool keep_when = name == "selectattr" || name == "select";
    size_t k = 0;
    std::string attr;
    if (by_attr) {
      if (args.empty() || !args[0].is_string())
        in.fail(pos, "filter '" + name + "' needs an attribute name");
      attr = args[k++].as_string();
    }
    const std::string test = k < args.size() ? args[k].str() : "";
    const Args test_args(args.begin() + std::min(args.size(), k + 1), args.end());
    List out;
    for (const Value& x : iterate(in, pos, v)) {
      const Value subject = by_attr ? path(in, pos, x, attr) : x;
      const bool ok =
          test.empty() ? subject.truthy() : apply_test(in, pos, test, subject, test_args);
      if (ok == keep_when) out.push_back(x);
    }
    return Value(std::move(out));
  }
  in.fail(pos, "unsupported filter '" + name + "'");
}

}  // namespace qat::data::jinja
