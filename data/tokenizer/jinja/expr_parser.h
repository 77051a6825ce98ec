// Recursive-descent expression parser for the Jinja subset, with jinja2's operator precedence:
// ternary < or < and < not < comparisons/in < + - < ~ < * / // % < ** < unary - < filters/tests
// < postfix (.attr, [item], (call)).
#pragma once

#include <algorithm>
#include <cstdlib>
#include <initializer_list>

#include "data/tokenizer/jinja/ast.h"

namespace qat::data::jinja {

// Reads the tokens of one tag; the statement parser drives it for the parts of a statement.
class Parser {
 public:
  Parser(std::string_view src, const std::vector<Token>& tokens) : src_(src), toks_(tokens) {}

  [[noreturn]] void fail(size_t pos, const std::string& msg) const {
    throw TemplateError("chat template: " + msg + " at " + describe_position(src_, pos));
  }
  const Token& peek(size_t ahead = 0) const {
    return toks_[std::min(i_ + ahead, toks_.size() - 1)];
  }
  bool at_op(const char* op) const { return peek().kind == Token::Kind::kOp && peek().text == op; }
  bool at_name(const char* name) const {
    return peek().kind == Token::Kind::kName && peek().text == name;
  }
  bool at_end() const { return peek().kind == Token::Kind::kEnd; }
  const Token& next() { return toks_[std::min(i_++, toks_.size() - 1)]; }
  void expect_op(const char* op) {
    if (!at_op(op))
      fail(peek().pos, std::string("expected '") + op + "', found " + describe(peek()));
    ++i_;
  }
  std::string expect_name() {
    if (peek().kind != Token::Kind::kName)
      fail(peek().pos, "expected a name, found " + describe(peek()));
    return next().text;
  }
  void expect_end() {
    if (!at_end()) fail(peek().pos, "unexpected " + describe(peek()));
  }
  static std::string describe(const Token& t) {
    return t.kind == Token::Kind::kEnd ? "end of tag" : "'" + t.text + "'";
  }

  ExprPtr make(Expr::Kind kind, size_t pos) {
    auto e = std::make_unique<Expr>();
    e->kind = kind;
    e->pos = pos;
    return e;
  }

  ExprPtr expression() {
    ExprPtr cond_true = or_expr();
    if (!at_name("if")) return cond_true;
    auto e = make(Expr::Kind::kTernary, next().pos);
    e->b = or_expr();  // condition
    e->a = std::move(cond_true);
    if (at_name("else")) {
      ++i_;
      e->c = expression();
    }
    return e;
  }
  ExprPtr or_expr() {
    ExprPtr left = and_expr();
    while (at_name("or")) {
      auto e = make(Expr::Kind::kOr, next().pos);
      e->a = std::move(left);
      e->b = and_expr();
      left = std::move(e);
    }
    return left;
  }
  ExprPtr and_expr() {
    ExprPtr left = not_expr();
    while (at_name("and")) {
      auto e = make(Expr::Kind::kAnd, next().pos);
      e->a = std::move(left);
      e->b = not_expr();
      left = std::move(e);
    }
    return left;
  }
  ExprPtr not_expr() {
    if (at_name("not")) {
      auto e = make(Expr::Kind::kNot, next().pos);
      e->a = not_expr();
      return e;
    }
    return compare();
  }
  // Python chains comparisons: a < b < c is (a < b) and (b < c), b evaluated once.
  ExprPtr compare() {
    ExprPtr left = math1();
    ExprPtr chain;
    while (true) {
      std::string op;
      const size_t pos = peek().pos;
      if (peek().kind == Token::Kind::kOp &&
          (at_op("==") || at_op("!=") || at_op("<") || at_op(">") || at_op("<=") || at_op(">="))) {
        op = next().text;
      } else if (at_name("in")) {
        ++i_;
        op = "in";
      } else if (at_name("not") && peek(1).kind == Token::Kind::kName && peek(1).text == "in") {
        i_ += 2;
        op = "not in";
      } else {
        return chain ? std::move(chain) : std::move(left);
      }
      if (!chain) {
        chain = make(Expr::Kind::kCompare, pos);
        chain->a = std::move(left);
      }
      chain->ops.push_back(op);
      chain->args.push_back(math1());
    }
  }
  ExprPtr binary_chain(ExprPtr (Parser::*operand)(), std::initializer_list<const char*> ops) {
    ExprPtr left = (this->*operand)();
    while (true) {
      const char* found = nullptr;
      for (const char* op : ops)
        if (at_op(op)) found = op;
      if (!found) return left;
      auto e = make(Expr::Kind::kBinary, next().pos);
      e->name = found;
      e->a = std::move(left);
      e->b = (this->*operand)();
      left = std::move(e);
    }
  }
  ExprPtr math1() { return binary_chain(&Parser::concat, {"+", "-"}); }
  ExprPtr concat() { return binary_chain(&Parser::math2, {"~"}); }
  ExprPtr math2() { return binary_chain(&Parser::power, {"*", "/", "//", "%"}); }
  ExprPtr power() { return binary_chain(&Parser::unary_filtered, {"**"}); }
  ExprPtr unary_filtered() { return unary(true); }

  ExprPtr unary(bool with_filter) {
    ExprPtr node;
    if (at_op("-") || at_op("+")) {
      const bool neg = at_op("-");
      auto e = make(neg ? Expr::Kind::kNeg : Expr::Kind::kBinary, next().pos);
      if (neg) {
        e->a = unary(false);
        node = std::move(e);
      } else {
        node = unary(false);  // unary plus changes nothing
      }
    } else {
      node = postfix(primary());
    }
    return with_filter ? filters(std::move(node)) : std::move(node);
  }

  void call_args(Expr& e) {
    expect_op("(");
    while (!at_op(")")) {
      if (peek().kind == Token::Kind::kName && peek(1).kind == Token::Kind::kOp &&
          peek(1).text == "=") {
        std::string key = next().text;
        ++i_;
        e.kwargs.emplace_back(std::move(key), expression());
      } else {
        if (!e.kwargs.empty()) fail(peek().pos, "positional argument after keyword argument");
        e.args.push_back(expression());
      }
      if (!at_op(",")) break;
      ++i_;
    }
    expect_op(")");
  }

  ExprPtr filters(ExprPtr node) {
    while (true) {
      if (at_op("|")) {
        auto e = make(Expr::Kind::kFilter, next().pos);
        e->name = expect_name();
        e->a = std::move(node);
        if (at_op("(")) call_args(*e);
        node = std::move(e);
      } else if (at_name("is")) {
        auto e = make(Expr::Kind::kTest, next().pos);
        if (at_name("not")) {
          ++i_;
          e->negated = true;
        }
        e->name = expect_name();
        e->a = std::move(node);
        if (at_op("(")) {
          call_args(*e);
        } else if (peek().kind == Token::Kind::kString || peek().kind == Token::Kind::kInt ||
                   peek().kind == Token::Kind::kFloat ||
                   (peek().kind == Token::Kind::kName && !at_name("and") && !at_name("or") &&
                    !at_name("else") && !at_name("if") && !at_name("in") && !at_name("not") &&
                    !at_name("is"))) {
          e->args.push_back(postfix(primary()));  // "is divisibleby 3", "is sameas none"
        }
        node = std::move(e);
      } else {
        return node;
      }
    }
  }

  ExprPtr postfix(ExprPtr node) {
    while (true) {
      if (at_op(".")) {
        auto e = make(Expr::Kind::kAttr, next().pos);
        if (peek().kind == Token::Kind::kInt) {
          e->kind = Expr::Kind::kItem;  // foo.0 is foo[0]
          auto idx = make(Expr::Kind::kLiteral, peek().pos);
          idx->literal = Value(static_cast<int64_t>(std::stoll(next().text)));
          e->b = std::move(idx);
        } else {
          e->name = expect_name();
        }
        e->a = std::move(node);
        node = std::move(e);
      } else if (at_op("[")) {
        const size_t pos = next().pos;
        ExprPtr parts[3];
        int n = 0;
        bool slice = false;
        while (true) {
          if (!at_op(":") && !at_op("]")) parts[n] = expression();
          if (at_op(":")) {
            if (n == 2) fail(peek().pos, "too many ':' in a slice");
            slice = true;
            ++i_;
            ++n;
            continue;
          }
          break;
        }
        expect_op("]");
        auto e = make(slice ? Expr::Kind::kSlice : Expr::Kind::kItem, pos);
        e->a = std::move(node);
        if (slice) {
          e->args.resize(3);
          for (int k = 0; k < 3; ++k) e->args[k] = std::move(parts[k]);
        } else {
          if (!parts[0]) fail(pos, "empty subscript");
          e->b = std::move(parts[0]);
        }
        node = std::move(e);
      } else if (at_op("(")) {
        auto e = make(Expr::Kind::kCall, peek().pos);
        e->a = std::move(node);
        call_args(*e);
        node = std::move(e);
      } else {
        return node;
      }
    }
  }

  ExprPtr primary() {
    const Token& t = peek();
    switch (t.kind) {
      case Token::Kind::kString: {
        auto e = make(Expr::Kind::kLiteral, t.pos);
        std::string s;
        while (peek().kind == Token::Kind::kString) s += next().text;  // "a" "b" concatenates
        e->literal = Value(std::move(s));
        return e;
      }
      case Token::Kind::kInt: {
        auto e = make(Expr::Kind::kLiteral, t.pos);
        try {
          e->literal = Value(static_cast<int64_t>(std::stoll(t.text)));
        } catch (const std::exception&) {
          fail(t.pos, "integer literal out of range");
        }
        ++i_;
        return e;
      }
      case Token::Kind::kFloat: {
        auto e = make(Expr::Kind::kLiteral, t.pos);
        e->literal = Value(std::strtod(t.text.c_str(), nullptr));
        ++i_;
        return e;
      }
      case Token::Kind::kName: {
        ++i_;
        auto e = make(Expr::Kind::kLiteral, t.pos);
        if (t.text == "true" || t.text == "True")
          e->literal = Value(true);
        else if (t.text == "false" || t.text == "False")
          e->literal = Value(false);
        else if (t.text == "none" || t.text == "None")
          e->literal = Value::none();
        else {
          e->kind = Expr::Kind::kName;
          e->name = t.text;
        }
        return e;
      }
      case Token::Kind::kOp:
        if (t.text == "(") {
          ++i_;
          ExprPtr first = expression();
          if (at_op(",")) {  // a tuple: evaluated as a list
            auto e = make(Expr::Kind::kList, t.pos);
            e->args.push_back(std::move(first));
            while (at_op(",")) {
              ++i_;
              if (at_op(")")) break;
              e->args.push_back(expression());
            }
            first = std::move(e);
          }
          expect_op(")");
          return first;
        }
        if (t.text == "[") {
          ++i_;
          auto e = make(Expr::Kind::kList, t.pos);
          while (!at_op("]")) {
            e->args.push_back(expression());
            if (!at_op(",")) break;
            ++i_;
          }
          expect_op("]");
          return e;
        }
        if (t.text == "{") {
          ++i_;
          auto e = make(Expr::Kind::kDict, t.pos);
          while (!at_op("}")) {
            ExprPtr k = expression();
            expect_op(":");
            e->items.emplace_back(std::move(k), expression());
            if (!at_op(",")) break;
            ++i_;
          }
          expect_op("}");
          return e;
        }
        fail(t.pos, "unexpected '" + t.text + "' in an expression");
      case Token::Kind::kEnd:
        fail(t.pos, "expected an expression, found end of tag");
    }
    fail(t.pos, "unexpected token");
  }

  size_t index() const { return i_; }

 private:
  std::string_view src_;
  const std::vector<Token>& toks_;
  size_t i_ = 0;
};

}  // namespace qat::data::jinja
