// The Jinja subset against transformers' own chat-template rendering (jinja2): SmolLM2's
// template from its GGUF, Llama-3's, Qwen2's, Qwen2.5's (tools) and a template that exercises
// the rest of the subset, over several conversations.
#include <catch2/catch.hpp>

#include "data/tokenizer/chat_template.h"
#include "data/tokenizer/jinja/value.h"
#include "tests/data/tokenizer/ref_data.h"

using qat::data::ChatTemplate;
using qat::data::jinja::TemplateError;

namespace {

// ordered_json: tojson prints keys in the messages' own order, as Python dicts keep it.
const nlohmann::ordered_json& chat_reference() {
  static const nlohmann::ordered_json ref = [] {
    const std::string path = qat::test::shared_ref_path("chat.json");
    const int rc = qat::test::run_python("chat_template_ref.py", {path});
    if (rc != 0) FAIL("tests/ref/chat_template_ref.py failed with status " << rc);
    return qat::test::read_json<nlohmann::ordered_json>(path);
  }();
  return ref;
}

}  // namespace

TEST_CASE("Chat templates render exactly as transformers' jinja2 environment",
          "[tokenizer][chat]") {
  const auto& ref = chat_reference();
  const std::string name =
      GENERATE(as<std::string>{}, "smollm2", "llama3", "qwen2", "qwen2.5", "features", "raises");
  const ChatTemplate tmpl(ref.at("templates").at(name).get<std::string>());
  size_t n = 0;
  for (const auto& c : ref.at("cases")) {
    if (c.at("template") != name) continue;
    ++n;
    CAPTURE(name, c.at("context").dump());
    if (c.at("error").is_null()) {
      CHECK(tmpl.render(c.at("context")) == c.at("output").get<std::string>());
    } else {
      // Both fail; a raise_exception message must come through verbatim.
      const std::string expected = c.at("error").get<std::string>();
      try {
        tmpl.render(c.at("context"));
        FAIL("rendering succeeded but jinja2 raised: " << expected);
      } catch (const TemplateError& e) {
        if (name == "raises") CHECK_THAT(e.what(), Catch::Contains(expected));
      }
    }
  }
  CHECK(n == 8);
}

TEST_CASE("Chat template convenience overload matches the context form", "[tokenizer][chat]") {
  const ChatTemplate tmpl(chat_reference().at("templates").at("llama3").get<std::string>());
  const nlohmann::ordered_json messages = {{{"role", "user"}, {"content", " Hi "}}};
  CHECK(tmpl.render(messages, true, "<s>", "</s>") ==
        "<s><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST_CASE("Unsupported or broken template syntax names the construct and position",
          "[tokenizer][chat]") {
  using Catch::Contains;
  CHECK_THROWS_WITH(ChatTemplate("ab\n  {% macro f() %}{% endmacro %}"),
                    Contains("unsupported statement 'macro'") && Contains("line 2, column 6"));
  CHECK_THROWS_WITH(ChatTemplate("{% if x %}never closed"), Contains("missing 'endif'"));
  CHECK_THROWS_WITH(ChatTemplate("{% endfor %}"), Contains("unexpected 'endfor'"));
  CHECK_THROWS_WITH(ChatTemplate("{{ 'unterminated }}"), Contains("unterminated string"));
  CHECK_THROWS_WITH(ChatTemplate("{{ x "), Contains("unclosed tag"));
  CHECK_THROWS_WITH(ChatTemplate("{{ a $ b }}"), Contains("unexpected character '$'"));
  CHECK_THROWS_WITH(ChatTemplate("{% for x in y recursive %}{% endfor %}"), Contains("recursive"));
  CHECK_THROWS_WITH(ChatTemplate("{{ x | wordcount }}").render(nlohmann::ordered_json{{"x", "a"}}),
                    Contains("unsupported filter 'wordcount'") && Contains("line 1, column 6"));
  CHECK_THROWS_WITH(ChatTemplate("{{ x is prime }}").render(nlohmann::ordered_json{{"x", 1}}),
                    Contains("unsupported test 'prime'"));
  CHECK_THROWS_WITH(ChatTemplate("{{ messages[0].role }}").render(nlohmann::ordered_json::object()),
                    Contains("'messages' is undefined"));
  CHECK_THROWS_WITH(ChatTemplate("{{ 'a' + 1 }}").render(nlohmann::ordered_json::object()),
                    Contains("unsupported operand types for +: 'str' and 'int'"));
  CHECK_THROWS_WITH(ChatTemplate("{{ x.format(1) }}").render(nlohmann::ordered_json{{"x", "a"}}),
                    Contains("is undefined (unsupported function or method)"));
}
