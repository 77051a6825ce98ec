// Splits a template into text and tags the way jinja2's lexer does, including "-"/"+"
// whitespace control, trim_blocks and lstrip_blocks, and tokenizes the inside of tags.
#include <cctype>

#include "data/tokenizer/jinja/ast.h"
#include "data/tokenizer/utf8.h"

namespace qat::data::jinja {

std::string describe_position(std::string_view source, size_t pos) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < pos && i < source.size(); ++i) {
    if (source[i] == '\n') {
      ++line;
      col = 1;
    } else if ((static_cast<unsigned char>(source[i]) & 0xC0) != 0x80) {
      ++col;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(col);
}

namespace {

[[noreturn]] void fail(std::string_view src, size_t pos, const std::string& msg) {
  throw TemplateError("chat template: " + msg + " at " + describe_position(src, pos));
}

// Python's str.isspace for the whitespace that "-" strips (ASCII plus Unicode spaces).
size_t rstrip_len(std::string_view s) {
  size_t end = s.size();
  while (end > 0) {
    size_t b = end - 1;
    while (b > 0 && (static_cast<unsigned char>(s[b]) & 0xC0) == 0x80) --b;
    char32_t cp = 0;
    utf8_decode(s, b, &cp);
    if (!(is_unicode_whitespace(cp) || (cp >= 0x1C && cp <= 0x1F))) break;
    end = b;
  }
  return end;
}

size_t lstrip_pos(std::string_view s, size_t pos) {
  while (pos < s.size()) {
    char32_t cp = 0;
    const int n = utf8_decode(s, pos, &cp);
    if (!(is_unicode_whitespace(cp) || (cp >= 0x1C && cp <= 0x1F))) break;
    pos += n;
  }
  return pos;
}

const char* const kOps[] = {"**", "//", "==", "!=", "<=", ">=", "(", ")", "[", "]", "{", "}", ".",
                            ",",  ":",  "|",  "~",  "+",  "-",  "*", "/", "%", "<", ">", "="};

// Tokenizes from `pos` until the closing delimiter `close` ("}}" or "%}"); returns the offset of
// the delimiter, which may be preceded by "-" or "+".
// Like jinja2, a delimiter inside open brackets ("{'a': {'b': 1}}") does not close the tag.
size_t lex_tag(std::string_view src, size_t pos, std::string_view close, std::vector<Token>& out) {
  int depth = 0;
  while (true) {
    while (pos < src.size() && std::isspace(static_cast<unsigned char>(src[pos]))) ++pos;
    if (pos >= src.size()) fail(src, pos, "unclosed tag (expected '" + std::string(close) + "')");
    if (depth == 0) {
      if (src.compare(pos, close.size(), close) == 0) return pos;
      if ((src[pos] == '-' || src[pos] == '+') && src.compare(pos + 1, close.size(), close) == 0) {
        return pos;
      }
    }
    const char c = src[pos];
    if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
      size_t e = pos;
      while (e < src.size() && (std::isalnum(static_cast<unsigned char>(src[e])) || src[e] == '_'))
        ++e;
      out.push_back({Token::Kind::kName, std::string(src.substr(pos, e - pos)), pos});
      pos = e;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t e = pos;
      bool is_float = false;
      while (e < src.size() && (std::isdigit(static_cast<unsigned char>(src[e])) || src[e] == '_'))
        ++e;
      if (e + 1 < src.size() && src[e] == '.' &&
          std::isdigit(static_cast<unsigned char>(src[e + 1]))) {
        is_float = true;
        ++e;
        while (e < src.size() && std::isdigit(static_cast<unsigned char>(src[e]))) ++e;
      }
      if (e < src.size() && (src[e] == 'e' || src[e] == 'E')) {
        size_t f = e + 1;
        if (f < src.size() && (src[f] == '+' || src[f] == '-')) ++f;
        if (f < src.size() && std::isdigit(static_cast<unsigned char>(src[f]))) {
          is_float = true;
          e = f;
          while (e < src.size() && std::isdigit(static_cast<unsigned char>(src[e]))) ++e;
        }
      }
      std::string text;
      for (char d : src.substr(pos, e - pos))
        if (d != '_') text += d;
      out.push_back({is_float ? Token::Kind::kFloat : Token::Kind::kInt, text, pos});
      pos = e;
    } else if (c == '\'' || c == '"') {
      std::string s;
      size_t e = pos + 1;
      for (;; ++e) {
        if (e >= src.size()) fail(src, pos, "unterminated string literal");
        if (src[e] == c) break;
        if (src[e] != '\\' || e + 1 >= src.size()) {
          s += src[e];
          continue;
        }
        const char n = src[++e];
        switch (n) {
          case 'n':
            s += '\n';
            break;
          case 't':
            s += '\t';
            break;
          case 'r':
            s += '\r';
            break;
          case '\\':
            s += '\\';
            break;
          case '\'':
            s += '\'';
            break;
          case '"':
            s += '"';
            break;
          case '\n':
            break;
          default:
            s += '\\';
            s += n;  // Python keeps unknown escapes as written
        }
      }
      out.push_back({Token::Kind::kString, s, pos});
      pos = e + 1;
    } else {
      bool matched = false;
      for (const char* op : kOps) {
        const std::string_view o(op);
        if (src.compare(pos, o.size(), o) == 0) {
          out.push_back({Token::Kind::kOp, std::string(o), pos});
          if (o == "(" || o == "[" || o == "{") ++depth;
          if ((o == ")" || o == "]" || o == "}") && depth > 0) --depth;
          pos += o.size();
          matched = true;
          break;
        }
      }
      if (!matched) fail(src, pos, std::string("unexpected character '") + c + "'");
    }
  }
}

}  // namespace

std::vector<Segment> lex(std::string_view src, const LexOptions& options) {
  std::vector<Segment> out;
  size_t pos = 0;
  bool strip_next = false;    // previous tag ended with "-": strip leading whitespace
  bool line_starting = true;  // jinja2: the previous match ended a line (or template start)
  while (pos <= src.size()) {
    size_t open = src.find('{', pos);
    while (open != std::string_view::npos && open + 1 < src.size() && src[open + 1] != '{' &&
           src[open + 1] != '%' && src[open + 1] != '#') {
      open = src.find('{', open + 1);
    }
    if (open != std::string_view::npos && open + 1 >= src.size()) open = std::string_view::npos;
    const size_t text_begin = strip_next ? lstrip_pos(src, pos) : pos;
    const size_t text_end = open == std::string_view::npos ? src.size() : open;
    std::string_view text =
        src.substr(std::min(text_begin, text_end), text_end - std::min(text_begin, text_end));
    if (open == std::string_view::npos) {
      if (!text.empty()) out.push_back({Segment::Kind::kText, std::string(text), {}, pos});
      break;
    }
    const char type = src[open + 1];
    const char sign = open + 2 < src.size() ? src[open + 2] : '\0';
    if (sign == '-') {
      text = text.substr(0, rstrip_len(text));
    } else if (sign != '+' && options.lstrip_blocks && type != '{') {
      // Only spaces/tabs between the line start and the tag: drop them.
      const size_t nl = text.rfind('\n');
      const size_t line_begin = nl == std::string_view::npos ? 0 : nl + 1;
      if (nl != std::string_view::npos || line_starting) {
        if (text.find_first_not_of(" \t", line_begin) == std::string_view::npos) {
          text = text.substr(0, line_begin);
        }
      }
    }
    if (!text.empty()) out.push_back({Segment::Kind::kText, std::string(text), {}, pos});
    size_t inner = open + 2 + ((sign == '-' || sign == '+') ? 1 : 0);
    size_t end_pos;  // first byte after the closing delimiter
    char end_sign = '\0';
    if (type == '#') {
      const size_t close = src.find("#}", inner);
      if (close == std::string_view::npos) fail(src, open, "unclosed comment");
      if (close > inner && (src[close - 1] == '-' || src[close - 1] == '+'))
        end_sign = src[close - 1];
      end_pos = close + 2;
    } else {
      Segment seg{type == '{' ? Segment::Kind::kOutput : Segment::Kind::kStatement, "", {}, open};
      const std::string_view close = type == '{' ? "}}" : "%}";
      size_t c = lex_tag(src, inner, close, seg.tokens);
      if (src[c] == '-' || src[c] == '+') end_sign = src[c++];
      seg.tokens.push_back({Token::Kind::kEnd, "", c});
      out.push_back(std::move(seg));
      end_pos = c + 2;
    }
    strip_next = end_sign == '-';
    if (!strip_next && end_sign != '+' && options.trim_blocks && type != '{') {
      if (end_pos < src.size() && src[end_pos] == '\n')
        ++end_pos;
      else if (end_pos + 1 < src.size() && src[end_pos] == '\r' && src[end_pos + 1] == '\n')
        end_pos += 2;
    }
    line_starting = end_pos > 0 && src[end_pos - 1] == '\n';
    if (strip_next) {
      const size_t next = lstrip_pos(src, end_pos);
      line_starting = next > 0 && src[next - 1] == '\n';
    }
    pos = end_pos;
  }
  return out;
}

}  // namespace qat::data::jinja
