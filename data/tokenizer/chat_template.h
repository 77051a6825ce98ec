// Chat templates: the model's own Jinja template (tokenizer.chat_template in GGUF,
// "chat_template" in tokenizer_config.json) rendered by a small Jinja interpreter that
// reproduces what transformers' apply_chat_template produces (jinja2 with trim_blocks and
// lstrip_blocks, loop controls, raise_exception, namespace, tojson).
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

namespace qat::data {

namespace jinja {
struct Node;
}

struct ChatTemplateOptions {
  bool trim_blocks = true;    // transformers' setting
  bool lstrip_blocks = true;  // transformers' setting
};

class ChatTemplate {
 public:
  // Parses the template; unsupported syntax throws jinja::TemplateError (a std::runtime_error)
  // naming the construct with its line and column.
  explicit ChatTemplate(std::string source, ChatTemplateOptions options = {});
  ~ChatTemplate();
  ChatTemplate(ChatTemplate&&) noexcept;
  ChatTemplate& operator=(ChatTemplate&&) noexcept;

  // Renders with `context` (a JSON object; ordered_json keeps the key order that tojson prints) as
  // the template's variables: "messages" (array of
  // {"role", "content", ...}), "add_generation_prompt", "bos_token", "eos_token", "tools", ...
  // Errors (raise_exception, undefined variables used as objects, type errors) throw.
  std::string render(const nlohmann::ordered_json& context) const;
  // The common case.
  std::string render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                     const std::string& bos_token = "", const std::string& eos_token = "") const;

  const std::string& source() const { return source_; }

 private:
  std::string source_;
  std::unique_ptr<std::vector<std::unique_ptr<jinja::Node>>> body_;
};

}  // namespace qat::data
