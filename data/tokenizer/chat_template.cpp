#include "data/tokenizer/chat_template.h"

#include "data/tokenizer/jinja/interpreter.h"

namespace qat::data {

ChatTemplate::ChatTemplate(std::string source, ChatTemplateOptions options)
    : source_(std::move(source)) {
  jinja::LexOptions lex;
  lex.trim_blocks = options.trim_blocks;
  lex.lstrip_blocks = options.lstrip_blocks;
  body_ = std::make_unique<jinja::Body>(jinja::parse(source_, lex));
}

ChatTemplate::~ChatTemplate() = default;
ChatTemplate::ChatTemplate(ChatTemplate&&) noexcept = default;
ChatTemplate& ChatTemplate::operator=(ChatTemplate&&) noexcept = default;

std::string ChatTemplate::render(const nlohmann::ordered_json& context) const {
  if (!context.is_object()) {
    throw jinja::TemplateError("chat template: the context must be a JSON object, found " +
                               std::string(context.type_name()));
  }
  jinja::Dict globals = jinja::default_globals();
  for (auto it = context.begin(); it != context.end(); ++it) {
    globals.emplace_back(it.key(), jinja::Value::from_json(it.value()));
  }
  jinja::Interpreter interpreter(source_, std::move(globals));
  return interpreter.render(*body_);
}

std::string ChatTemplate::render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                 const std::string& bos_token, const std::string& eos_token) const {
  return render(nlohmann::ordered_json{{"messages", messages},
                                       {"add_generation_prompt", add_generation_prompt},
                                       {"bos_token", bos_token},
                                       {"eos_token", eos_token}});
}

}  // namespace qat::data
