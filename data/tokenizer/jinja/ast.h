// Syntax of the Jinja subset: lexer output, expression and statement trees.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "data/tokenizer/jinja/value.h"

namespace qat::data::jinja {

// "line L, column C" of byte offset `pos` in `source`.
std::string describe_position(std::string_view source, size_t pos);

struct Token {
  enum class Kind { kName, kString, kInt, kFloat, kOp, kEnd };
  Kind kind;
  std::string text;  // identifier, decoded string literal, number text or operator
  size_t pos;        // byte offset in the template
};

// A template split into text and tags (whitespace control, trim_blocks and lstrip_blocks
// already applied to the text).
struct Segment {
  enum class Kind { kText, kOutput, kStatement };
  Kind kind;
  std::string text;           // kText
  std::vector<Token> tokens;  // kOutput / kStatement, ending with a kEnd token
  size_t pos;
};

struct LexOptions {
  bool trim_blocks = true;  // transformers renders chat templates with both on
  bool lstrip_blocks = true;
};

std::vector<Segment> lex(std::string_view source, const LexOptions& options);

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

struct Expr {
  enum class Kind {
    kLiteral,
    kName,
    kList,
    kDict,
    kAttr,
    kItem,
    kSlice,
    kCall,
    kFilter,
    kTest,
    kNot,
    kNeg,
    kBinary,
    kCompare,
    kAnd,
    kOr,
    kTernary
  };
  Kind kind;
  size_t pos = 0;
  Value literal;              // kLiteral
  std::string name;           // variable, attribute, filter, test or binary operator
  bool negated = false;       // "is not", "not in"
  ExprPtr a, b, c;            // operands (slice: start, stop, step)
  std::vector<ExprPtr> args;  // call/filter/test arguments, list items
  std::vector<std::pair<std::string, ExprPtr>> kwargs;
  std::vector<std::pair<ExprPtr, ExprPtr>> items;  // dict literal
  std::vector<std::string> ops;                    // kCompare: a op0 args[0] op1 args[1] ...
};

struct Node;
using NodePtr = std::unique_ptr<Node>;
using Body = std::vector<NodePtr>;

struct Node {
  enum class Kind { kText, kOutput, kIf, kFor, kSet, kSetBlock, kBreak, kContinue };
  Kind kind;
  size_t pos = 0;
  std::string text;                                // kText
  ExprPtr expr;                                    // output, set value, for iterable
  std::vector<std::pair<ExprPtr, Body>> branches;  // if/elif/else (else: null condition)
  std::vector<std::string> targets;                // for / set names
  std::string attr;                                // set ns.attr
  ExprPtr filter;                                  // for ... if cond
  Body body, else_body;                            // for body, set block body
};

// Parses the template into statements; throws TemplateError naming the construct and position.
Body parse(std::string_view source, const LexOptions& options);

}  // namespace qat::data::jinja
