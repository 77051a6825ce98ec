// Statement structure of the Jinja subset: if/elif/else, for (with "if" filter and else), set
// (plain, namespace attribute, block), break/continue, and transformers' generation block.
#include <set>

#include "data/tokenizer/jinja/expr_parser.h"

namespace qat::data::jinja {

namespace {

class StatementParser {
 public:
  StatementParser(std::string_view src, std::vector<Segment>& segs) : src_(src), segs_(segs) {}

  [[noreturn]] void fail(size_t pos, const std::string& msg) const {
    throw TemplateError("chat template: " + msg + " at " + describe_position(src_, pos));
  }

  // Parses until a statement whose keyword is in `terminators` (returned, with the parser
  // positioned after the keyword) or the end of the template (returns "").
  Body parse_body(const std::set<std::string>& terminators, std::string* found,
                  std::unique_ptr<Parser>* term) {
    Body body;
    while (k_ < segs_.size()) {
      Segment& seg = segs_[k_++];
      auto node = std::make_unique<Node>();
      node->pos = seg.pos;
      if (seg.kind == Segment::Kind::kText) {
        node->kind = Node::Kind::kText;
        node->text = std::move(seg.text);
        body.push_back(std::move(node));
        continue;
      }
      auto p = std::make_unique<Parser>(src_, seg.tokens);
      if (seg.kind == Segment::Kind::kOutput) {
        node->kind = Node::Kind::kOutput;
        node->expr = p->expression();
        p->expect_end();
        body.push_back(std::move(node));
        continue;
      }
      const size_t kw_pos = p->peek().pos;
      const std::string kw = p->expect_name();
      if (terminators.count(kw)) {
        *found = kw;
        *term = std::move(p);
        return body;
      }
      if (kw == "if") {
        parse_if(*p, *node);
      } else if (kw == "for") {
        parse_for(*p, *node);
      } else if (kw == "set") {
        parse_set(*p, *node);
      } else if (kw == "break" || kw == "continue") {
        p->expect_end();
        node->kind = kw == "break" ? Node::Kind::kBreak : Node::Kind::kContinue;
      } else if (kw == "generation") {
        // transformers' AssistantTracker block: renders its body unchanged.
        p->expect_end();
        std::string end;
        std::unique_ptr<Parser> tp;
        Body inner = parse_body({"endgeneration"}, &end, &tp);
        if (end.empty()) fail(kw_pos, "missing 'endgeneration' for 'generation'");
        tp->expect_end();
        for (auto& n : inner) body.push_back(std::move(n));
        continue;
      } else if (kw == "elif" || kw == "else" || kw.rfind("end", 0) == 0) {
        fail(kw_pos, "unexpected '" + kw + "'");
      } else {
        fail(kw_pos, "unsupported statement '" + kw +
                         "' (supported: if, for, set, break, "
                         "continue, generation)");
      }
      body.push_back(std::move(node));
    }
    found->clear();
    return body;
  }

  void parse_if(Parser& p, Node& node) {
    node.kind = Node::Kind::kIf;
    ExprPtr cond = p.expression();
    p.expect_end();
    while (true) {
      std::string end;
      std::unique_ptr<Parser> tp;
      Body body = parse_body({"elif", "else", "endif"}, &end, &tp);
      if (end.empty()) fail(node.pos, "missing 'endif' for 'if'");
      node.branches.emplace_back(std::move(cond), std::move(body));
      if (end == "endif") {
        tp->expect_end();
        return;
      }
      if (end == "else") {
        tp->expect_end();
        Body else_body = parse_body({"endif"}, &end, &tp);
        if (end.empty()) fail(node.pos, "missing 'endif' for 'if'");
        tp->expect_end();
        node.branches.emplace_back(nullptr, std::move(else_body));
        return;
      }
      cond = tp->expression();  // elif
      tp->expect_end();
    }
  }

  void parse_for(Parser& p, Node& node) {
    node.kind = Node::Kind::kFor;
    node.targets.push_back(p.expect_name());
    while (p.at_op(",")) {
      p.next();
      node.targets.push_back(p.expect_name());
    }
    if (!p.at_name("in")) fail(p.peek().pos, "expected 'in' in a for loop");
    p.next();
    // The iterable is parsed without the conditional expression so that "if" starts a filter.
    node.expr = p.or_expr();
    if (p.at_name("if")) {
      p.next();
      node.filter = p.expression();
    }
    if (p.at_name("recursive")) fail(p.peek().pos, "unsupported 'recursive' for loop");
    p.expect_end();
    std::string end;
    std::unique_ptr<Parser> tp;
    node.body = parse_body({"else", "endfor"}, &end, &tp);
    if (end.empty()) fail(node.pos, "missing 'endfor' for 'for'");
    tp->expect_end();
    if (end == "else") {
      node.else_body = parse_body({"endfor"}, &end, &tp);
      if (end.empty()) fail(node.pos, "missing 'endfor' for 'for'");
      tp->expect_end();
    }
  }

  void parse_set(Parser& p, Node& node) {
    node.kind = Node::Kind::kSet;
    node.targets.push_back(p.expect_name());
    if (p.at_op(".")) {
      p.next();
      node.attr = p.expect_name();
    } else {
      while (p.at_op(",")) {
        p.next();
        node.targets.push_back(p.expect_name());
      }
    }
    if (p.at_op("=")) {
      p.next();
      node.expr = p.expression();
      if (p.at_op(",")) {  // set a, b = 1, 2
        auto list = p.make(Expr::Kind::kList, node.expr->pos);
        list->args.push_back(std::move(node.expr));
        while (p.at_op(",")) {
          p.next();
          list->args.push_back(p.expression());
        }
        node.expr = std::move(list);
      }
      p.expect_end();
      return;
    }
    if (!p.at_end()) fail(p.peek().pos, "expected '=' in set, found " + Parser::describe(p.peek()));
    if (node.targets.size() != 1 || !node.attr.empty())
      fail(node.pos, "a set block takes one name");
    node.kind = Node::Kind::kSetBlock;
    std::string end;
    std::unique_ptr<Parser> tp;
    node.body = parse_body({"endset"}, &end, &tp);
    if (end.empty()) fail(node.pos, "missing 'endset' for 'set'");
    tp->expect_end();
  }

  size_t index() const { return k_; }

 private:
  std::string_view src_;
  std::vector<Segment>& segs_;
  size_t k_ = 0;
};

}  // namespace

Body parse(std::string_view source, const LexOptions& options) {
  std::vector<Segment> segs = lex(source, options);
  StatementParser sp(source, segs);
  std::string end;
  std::unique_ptr<Parser> tp;
  Body body = sp.parse_body({}, &end, &tp);
  return body;
}

}  // namespace qat::data::jinja
