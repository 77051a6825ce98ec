// Attribute/item access, filters, tests, string and dict methods, and global functions of the
// Jinja subset, following jinja2 + transformers' chat-template environment.
#include <algorithm>
#include <cctype>
#include <ctime>

#include "data/tokenizer/jinja/interpreter.h"
#include "data/tokenizer/utf8.h"

namespace qat::data::jinja {

namespace {

std::vector<std::string> chars_of(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const size_t n = std::min<size_t>(utf8_length(static_cast<unsigned char>(s[i])), s.size() - i);
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

bool is_space_char(const std::string& ch) {
  char32_t cp = 0;
  utf8_decode(ch, 0, &cp);
  return is_unicode_whitespace(cp) || (cp >= 0x1C && cp <= 0x1F);
}

// Python's str.strip/lstrip/rstrip: whitespace, or any of the characters in `chars`.
std::string strip(const std::string& s, const Value& chars, bool left, bool right) {
  const auto cs = chars_of(s);
  std::vector<std::string> set;
  if (chars.is_string()) set = chars_of(chars.as_string());
  auto strippable = [&](const std::string& c) {
    return chars.is_string() ? std::find(set.begin(), set.end(), c) != set.end() : is_space_char(c);
  };
  size_t b = 0, e = cs.size();
  if (left)
    while (b < e && strippable(cs[b])) ++b;
  if (right)
    while (e > b && strippable(cs[e - 1])) --e;
  std::string out;
  for (size_t i = b; i < e; ++i) out += cs[i];
  return out;
}

std::string ascii_case(std::string s, bool upper) {
  for (char& c : s)
    c = static_cast<char>(upper ? std::toupper(static_cast<unsigned char>(c))
                                : std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::string title_case(const std::string& s) {
  std::string out;
  bool prev_alpha = false;
  for (char c : s) {
    const bool alpha = std::isalpha(static_cast<unsigned char>(c));
    out += static_cast<char>(alpha ? (prev_alpha ? std::tolower(c) : std::toupper(c)) : c);
    prev_alpha = alpha;
  }
  return out;
}

std::string replace_all(const std::string& s, const std::string& from, const std::string& to,
                        int64_t count) {
  if (from.empty()) return s;
  std::string out;
  size_t pos = 0;
  for (int64_t n = 0; count < 0 || n < count; ++n) {
    const size_t f = s.find(from, pos);
    if (f == std::string::npos) break;
    out.append(s, pos, f - pos);
    out += to;
    pos = f + from.size();
  }
  return out + s.substr(pos);
}

Value split(const std::string& s, const Value& sep, int64_t maxsplit) {
  List out;
  if (!sep.is_string()) {  // whitespace runs, empty pieces dropped
    std::string cur;
    int64_t splits = 0;
    const auto cs = chars_of(s);
    for (size_t i = 0; i < cs.size(); ++i) {
      if (is_space_char(cs[i]) && (maxsplit < 0 || splits < maxsplit)) {
        if (!cur.empty()) {
          out.emplace_back(cur);
          cur.clear();
          ++splits;
        }
      } else if (!(cur.empty() && is_space_char(cs[i]))) {
        cur += cs[i];
      }
    }
    if (!cur.empty()) out.emplace_back(strip(cur, Value(), false, true));
    return Value(std::move(out));
  }
  const std::string& d = sep.as_string();
  if (d.empty()) throw std::invalid_argument("empty separator");
  size_t pos = 0;
  for (int64_t n = 0; maxsplit < 0 || n < maxsplit; ++n) {
    const size_t f = s.find(d, pos);
    if (f == std::string::npos) break;
    out.emplace_back(s.substr(pos, f - pos));
    pos = f + d.size();
  }
  out.emplace_back(s.substr(pos));
  return Value(std::move(out));
}

std::string need_string(const Value& v, const char* what) {
  if (!v.is_string())
    throw std::invalid_argument(std::string(what) + " expects a string, found " + v.type_name());
  return v.as_string();
}

Value string_method(const std::string& s, const std::string& name) {
  auto fn = [&](Function f) { return Value::function("str." + name, std::move(f)); };
  if (name == "strip" || name == "lstrip" || name == "rstrip") {
    const bool l = name != "rstrip", r = name != "lstrip";
    return fn([s, l, r](const Args& a, const Kwargs&) { return Value(strip(s, arg(a, 0), l, r)); });
  }
  if (name == "startswith" || name == "endswith") {
    const bool start = name == "startswith";
    return fn([s, start](const Args& a, const Kwargs&) {
      List options = arg(a, 0).is_list() ? arg(a, 0).list() : List{arg(a, 0)};
      for (const Value& o : options) {
        const std::string p = need_string(o, "startswith/endswith");
        if (p.size() <= s.size() && s.compare(start ? 0 : s.size() - p.size(), p.size(), p) == 0)
          return Value(true);
      }
      return Value(false);
    });
  }
  if (name == "split") {
    return fn([s](const Args& a, const Kwargs& kw) {
      const Value& m = arg(a, 1, kw, "maxsplit");
      return split(s, arg(a, 0, kw, "sep"), m.is_number() ? m.as_int() : -1);
    });
  }
  if (name == "upper" || name == "lower") {
    const bool up = name == "upper";
    return fn([s, up](const Args&, const Kwargs&) { return Value(ascii_case(s, up)); });
  }
  if (name == "title") return fn([s](const Args&, const Kwargs&) { return Value(title_case(s)); });
  if (name == "capitalize") {
    return fn([s](const Args&, const Kwargs&) {
      std::string r = ascii_case(s, false);
      if (!r.empty()) r[0] = static_cast<char>(std::toupper(static_cast<unsigned char>(r[0])));
      return Value(r);
    });
  }
  if (name == "replace") {
    return fn([s](const Args& a, const Kwargs&) {
      const Value& c = arg(a, 2);
      return Value(replace_all(s, need_string(arg(a, 0), "replace"),
                               need_string(arg(a, 1), "replace"), c.is_number() ? c.as_int() : -1));
    });
  }
  if (name == "join") {
    return fn([s](const Args& a, const Kwargs&) {
      std::string out;
      const Value& items = arg(a, 0);
      if (!items.is_list()) throw std::invalid_argument("join expects a list");
      for (size_t i = 0; i < items.list().size(); ++i)
        out += (i ? s : "") + need_string(items.list()[i], "join");
      return Value(out);
    });
  }
  if (name == "find" || name == "count") {
    const bool find = name == "find";
    return fn([s, find](const Args& a, const Kwargs&) {
      const std::string sub = need_string(arg(a, 0), "find/count");
      if (find) {
        const size_t f = s.find(sub);
        return Value(f == std::string::npos
                         ? int64_t{-1}
                         : static_cast<int64_t>(chars_of(s.substr(0, f)).size()));
      }
      int64_t n = 0;
      for (size_t p = s.find(sub); !sub.empty() && p != std::string::npos;
           p = s.find(sub, p + sub.size()))
        ++n;
      return Value(n);
    });
  }
  return Value::undefined("str." + name);
}

Value dict_method(const Value& d, const std::string& name) {
  auto fn = [&](Function f) { return Value::function("dict." + name, std::move(f)); };
  if (name == "items" || name == "keys" || name == "values") {
    const int what = name == "items" ? 0 : name == "keys" ? 1 : 2;
    return fn([d, what](const Args&, const Kwargs&) {
      List out;
      for (const auto& [k, v] : d.dict()) {
        out.push_back(what == 0 ? Value(List{Value(k), v}) : what == 1 ? Value(k) : v);
      }
      return Value(std::move(out));
    });
  }
  if (name == "get") {
    return fn([d](const Args& a, const Kwargs&) {
      const Value* v = arg(a, 0).is_string() ? d.find(arg(a, 0).as_string()) : nullptr;
      return v ? *v : (a.size() > 1 ? a[1] : Value::none());
    });
  }
  return Value();
}

}  // namespace

Value attribute(Interpreter& in, size_t pos, const Value& obj, const std::string& name) {
  if (obj.is_undefined()) {
    in.fail(pos,
            "'" + obj.undefined_name() + "' is undefined (reading its attribute '" + name + "')");
  }
  if (obj.is_string()) return string_method(obj.as_string(), name);
  if (obj.is_dict()) {
    // jinja2 tries Python attributes first: d.items is the method even if "items" is a key.
    Value m = dict_method(obj, name);
    if (!m.is_undefined()) return m;
    const Value* v = obj.find(name);
    return v ? *v : Value::undefined(name);
  }
  return Value::undefined(name);
}

Value subscript(Interpreter& in, size_t pos, const Value& obj, const Value& key) {
  if (obj.is_undefined()) {
    in.fail(pos, "'" + obj.undefined_name() + "' is undefined (subscripting it with " + key.repr() +
                     ")");
  }
  if (obj.is_dict() && key.is_string()) {
    const Value* v = obj.find(key.as_string());
    return v ? *v : attribute(in, pos, obj, key.as_string());
  }
  if ((obj.is_list() || obj.is_string()) && key.kind() == Value::Kind::kInt) {
    const auto chars = obj.is_string() ? chars_of(obj.as_string()) : std::vector<std::string>{};
    const auto n = static_cast<int64_t>(obj.is_list() ? obj.list().size() : chars.size());
    int64_t i = key.as_int();
    if (i < 0) i += n;
    if (i < 0 || i >= n) return Value::undefined("index " + key.repr());
    return obj.is_list() ? obj.list()[i] : Value(chars[i]);
  }
  if (key.is_string()) return attribute(in, pos, obj, key.as_string());
  return Value::undefined(key.repr());
}

Value slice(Interpreter& in, size_t pos, const Value& obj, const Value& start, const Value& stop,
            const Value& step) {
  if (!obj.is_list() && !obj.is_string()) in.fail(pos, "cannot slice a " + obj.type_name());
  const auto chars = obj.is_string() ? chars_of(obj.as_string()) : std::vector<std::string>{};
  const auto n = static_cast<int64_t>(obj.is_list() ? obj.list().size() : chars.size());
  const int64_t st = step.is_none() ? 1 : step.as_int();
  if (st == 0) in.fail(pos, "slice step cannot be zero");
  // Python's slice.indices().
  auto clamp = [&](const Value& v, int64_t dflt) {
    if (v.is_none()) return dflt;
    int64_t i = v.as_int();
    if (i < 0) i += n;
    return st > 0 ? std::clamp<int64_t>(i, 0, n) : std::clamp<int64_t>(i, -1, n - 1);
  };
  const int64_t b = clamp(start, st > 0 ? 0 : n - 1), e = clamp(stop, st > 0 ? n : -1);
  List items;
  std::string s;
  for (int64_t i = b; st > 0 ? i < e : i > e; i += st) {
    if (obj.is_list())
      items.push_back(obj.list()[i]);
    else
      s += chars[i];
  }
  return obj.is_list() ? Value(std::move(items)) : Value(std::move(s));
}

List iterate(Interpreter& in, size_t pos, const Value& v) {
  if (v.is_undefined()) return {};
  if (v.is_list()) return v.list();
  if (v.is_dict()) {
    List keys;
    for (const auto& kv : v.dict()) keys.emplace_back(kv.first);
    return keys;
  }
  if (v.is_string()) {
    List out;
    for (auto& c : chars_of(v.as_string())) out.emplace_back(std::move(c));
    return out;
  }
  in.fail(pos, "'" + v.type_name() + "' object is not iterable");
}

bool apply_test(Interpreter& in, size_t pos, const std::string& name, const Value& v,
                const Args& args) {
  using K = Value::Kind;
  if (name == "defined") return !v.is_undefined();
  if (name == "undefined") return v.is_undefined();
  if (name == "none") return v.is_none();
  if (name == "string") return v.is_string();
  if (name == "number") return v.is_number() || v.kind() == K::kBool;
  if (name == "integer") return v.kind() == K::kInt;
  if (name == "float") return v.kind() == K::kFloat;
  if (name == "boolean") return v.kind() == K::kBool;
  if (name == "true") return v.kind() == K::kBool && v.as_bool();
  if (name == "false") return v.kind() == K::kBool && !v.as_bool();
  if (name == "mapping") return v.is_dict();
  if (name == "iterable" || name == "sequence") return v.is_list() || v.is_dict() || v.is_string();
  if (name == "callable") return v.kind() == K::kFunction;
  if (name == "even" || name == "odd") {
    if (v.kind() != K::kInt) in.fail(pos, "test '" + name + "' needs an integer");
    return (v.as_int() % 2 == 0) == (name == "even");
  }
  if (name == "divisibleby") {
    if (v.kind() != K::kInt || arg(args, 0).kind() != K::kInt || arg(args, 0).as_int() == 0) {
      in.fail(pos, "test 'divisibleby' needs non-zero integers");
    }
    return v.as_int() % arg(args, 0).as_int() == 0;
  }
  if (name == "eq" || name == "equalto" || name == "==" || name == "sameas")
    return v.equals(arg(args, 0));
  if (name == "ne" || name == "!=") return !v.equals(arg(args, 0));
  if (name == "in") {
    const Value& c = arg(args, 0);
    if (c.is_string())
      return v.is_string() && c.as_string().find(v.as_string()) != std::string::npos;
    for (const Value& x : iterate(in, pos, c))
      if (x.equals(v)) return true;
    return false;
  }
  if (name == "lower" || name == "upper") {
    return v.is_string() && ascii_case(v.as_string(), name == "upper") == v.as_string();
  }
  in.fail(pos, "unsupported test '" + name + "'");
}

// Defined in filters.cpp.
Value apply_filter_impl(Interpreter& in, size_t pos, const std::string& name, const Value& v,
                        const Args& args, const Kwargs& kwargs);

Value apply_filter(Interpreter& in, size_t pos, const std::string& name, const Value& v,
                   const Args& args, const Kwargs& kwargs) {
  try {
    return apply_filter_impl(in, pos, name, v, args, kwargs);
  } catch (const TemplateError&) {
    throw;
  } catch (const std::exception& e) {
    in.fail(pos, "filter '" + name + "': " + e.what());
  }
}

const Value& arg(const Args& a, size_t i, const Kwargs& kw, const char* name) {
  static const Value kMissing;
  if (name)
    for (const auto& [k, v] : kw)
      if (k == name) return v;
  return i < a.size() ? a[i] : kMissing;
}

std::string strip_string(const std::string& s, const Value& chars) {
  return strip(s, chars, true, true);
}

Dict default_globals() {
  Dict g;
  g.emplace_back("raise_exception",
                 Value::function("raise_exception", [](const Args& a, const Kwargs&) -> Value {
                   throw TemplateError("chat template raised an exception: " +
                                       (a.empty() ? std::string() : a[0].str()));
                 }));
  g.emplace_back("namespace", Value::function("namespace", [](const Args& a, const Kwargs& kw) {
                   Value ns{Dict{}};
                   if (!a.empty() && a[0].is_dict())
                     for (const auto& [k, v] : a[0].dict()) ns.set(k, v);
                   for (const auto& [k, v] : kw) ns.set(k, v);
                   return ns;
                 }));
  g.emplace_back("dict", Value::function("dict", [](const Args&, const Kwargs& kw) {
                   Value d{Dict{}};
                   for (const auto& [k, v] : kw) d.set(k, v);
                   return d;
                 }));
  g.emplace_back("range", Value::function("range", [](const Args& a, const Kwargs&) {
                   for (const Value& x : a)
                     if (x.kind() != Value::Kind::kInt)
                       throw std::invalid_argument("range expects integers");
                   int64_t b = 0, e = 0, s = 1;
                   if (a.size() == 1)
                     e = a[0].as_int();
                   else if (a.size() >= 2)
                     b = a[0].as_int(), e = a[1].as_int();
                   if (a.size() >= 3) s = a[2].as_int();
                   if (s == 0) throw std::invalid_argument("range step cannot be zero");
                   List out;
                   for (int64_t i = b; s > 0 ? i < e : i > e; i += s) {
                     if (out.size() >= 1000000) throw std::invalid_argument("range too long");
                     out.emplace_back(i);
                   }
                   return Value(std::move(out));
                 }));
  g.emplace_back("strftime_now", Value::function("strftime_now", [](const Args& a, const Kwargs&) {
                   const std::time_t t = std::time(nullptr);
                   std::tm tm{};
                   localtime_r(&t, &tm);
                   char buf[256];
                   const size_t n = std::strftime(
                       buf, sizeof(buf), need_string(arg(a, 0), "strftime_now").c_str(), &tm);
                   return Value(std::string(buf, n));
                 }));
  return g;
}

}  // namespace qat::data::jinja
