#include "data/dataset/instruction_dataset.h"

#include <stdexcept>

namespace qat::data {
namespace {

std::vector<int32_t> encode(const Tokenizer& tokenizer, const std::string& text, bool add_special,
                            bool parse_special, const std::string& source) {
  try {
    return tokenizer.encode(text, add_special, parse_special);
  } catch (const std::exception& e) {
    data_error(source, std::string("cannot tokenize: ") + e.what());
  }
}

int32_t eos_or_fail(const Tokenizer& tokenizer, const std::optional<int32_t>& eos_id) {
  if (eos_id) return *eos_id;
  if (!tokenizer.eos_id())
    throw std::runtime_error(
        "alpaca_examples: the tokenizer has no EOS token; set "
        "AlpacaOptions::eos_id");
  return *tokenizer.eos_id();
}

void append(Example& ex, const std::vector<int32_t>& ids, size_t from, bool in_loss) {
  for (size_t i = from; i < ids.size(); ++i) {
    ex.tokens.push_back(ids[i]);
    ex.labels.push_back(in_loss ? ids[i] : kIgnoreIndex);
  }
}

// Checks that `ids` starts with `prefix` (the token-level prefix property of incremental
// rendering); `what` says which rendering was expected to extend which.
void check_prefix(const std::vector<int32_t>& prefix, const std::vector<int32_t>& ids,
                  const std::string& source, const std::string& what) {
  size_t i = 0;
  while (i < prefix.size() && i < ids.size() && prefix[i] == ids[i]) ++i;
  if (i == prefix.size()) return;
  data_error(source,
             "the chat template breaks the prefix property: " + what + " (token " +
                 std::to_string(i) + " differs; " + std::to_string(prefix.size()) +
                 " tokens expected as prefix, " + std::to_string(ids.size()) +
                 " rendered). Assistant turns cannot be located; use a template that renders "
                 "earlier turns the same way whatever follows them");
}

}  // namespace

std::string alpaca_prompt(const std::string& instruction, const std::string& input,
                          const AlpacaOptions& options) {
  const std::string& tmpl = input.empty() ? options.prompt_no_input : options.prompt_with_input;
  std::string out;
  for (size_t i = 0; i < tmpl.size();) {
    if (tmpl.compare(i, 13, "{instruction}") == 0) {
      out += instruction;
      i += 13;
    } else if (tmpl.compare(i, 7, "{input}") == 0) {
      out += input;
      i += 7;
    } else {
      out += tmpl[i++];
    }
  }
  return out;
}

std::vector<Example> alpaca_examples(const std::vector<JsonRecord>& records,
                                     const Tokenizer& tokenizer, const AlpacaOptions& options) {
  const int32_t eos = eos_or_fail(tokenizer, options.eos_id);
  std::vector<Example> out;
  out.reserve(records.size());
  for (const auto& r : records) {
    const std::string& instruction = *string_field(r, "instruction");
    const std::string* input = string_field(r, "input", /*required=*/false);
    const std::string& output = *string_field(r, "output");
    if (instruction.empty()) data_error(r.source, "field 'instruction' is empty");
    if (output.empty()) data_error(r.source, "field 'output' is empty: nothing to train on");
    Example ex;
    ex.source = r.source;
    const std::string prompt = alpaca_prompt(instruction, input ? *input : "", options);
    append(ex, encode(tokenizer, prompt, true, false, r.source), 0, false);
    auto response = encode(tokenizer, output, false, false, r.source);
    response.push_back(eos);
    append(ex, response, 0, true);
    out.push_back(std::move(ex));
  }
  return out;
}

std::vector<Example> chat_examples(const std::vector<JsonRecord>& records,
                                   const Tokenizer& tokenizer, const ChatTemplate& chat_template,
                                   const ChatOptions& options) {
  auto token_text = [&](std::optional<int32_t> id) {
    return id ? tokenizer.id_to_token(*id) : std::string();
  };
  const std::string bos = options.bos_token ? *options.bos_token : token_text(tokenizer.bos_id());
  const std::string eos = options.eos_token ? *options.eos_token : token_text(tokenizer.eos_id());

  std::vector<Example> out;
  out.reserve(records.size());
  for (const auto& r : records) {
    const auto it = r.value.find("messages");
    if (it == r.value.end()) data_error(r.source, "missing field 'messages'");
    if (!it->is_array())
      data_error(r.source,
                 std::string("field 'messages' must be an array, found ") + it->type_name());
    if (it->empty()) data_error(r.source, "field 'messages' is empty");
    const nlohmann::ordered_json& messages = *it;
    bool any_assistant = false;
    for (size_t k = 0; k < messages.size(); ++k) {
      const std::string where = r.source + ": messages[" + std::to_string(k) + "]";
      const auto& m = messages[k];
      if (!m.is_object())
        data_error(where, std::string("expected an object, found ") + m.type_name());
      for (const char* key : {"role", "content"}) {
        const auto f = m.find(key);
        if (f == m.end()) data_error(where, std::string("missing field '") + key + "'");
        if (!f->is_string())
          data_error(where,
                     std::string("field '") + key + "' must be a string, found " + f->type_name());
      }
      any_assistant |= m["role"] == "assistant";
    }
    if (!any_assistant) data_error(r.source, "no 'assistant' message: nothing to train on");

    auto render = [&](size_t count, bool generation_prompt) {
      nlohmann::ordered_json prefix = nlohmann::ordered_json::array();
      for (size_t k = 0; k < count; ++k) prefix.push_back(messages[k]);
      try {
        return chat_template.render(prefix, generation_prompt, bos, eos);
      } catch (const std::exception& e) {
        data_error(r.source, "the chat template failed on the first " + std::to_string(count) +
                                 " message(s): " + e.what());
      }
    };
    auto ids_of = [&](const std::string& text) {
      return encode(tokenizer, text, /*add_special=*/false, /*parse_special=*/true, r.source);
    };

    Example ex;
    ex.source = r.source;
    for (size_t k = 0; k < messages.size(); ++k) {
      if (messages[k]["role"] != "assistant") continue;
      const std::string turn = "messages[" + std::to_string(k) + "] (assistant)";
      const auto before = ids_of(render(k, true));
      check_prefix(ex.tokens, before, r.source,
                   "the prompt before " + turn + " does not extend the previous turns");
      append(ex, before, ex.tokens.size(), false);
      const auto after = ids_of(render(k + 1, false));
      check_prefix(before, after, r.source,
                   turn + " does not extend the generation prompt rendered before it");
      append(ex, after, ex.tokens.size(), true);
    }
    const auto full = ids_of(render(messages.size(), false));
    check_prefix(ex.tokens, full, r.source,
                 "the whole conversation does not extend its last assistant turn");
    append(ex, full, ex.tokens.size(), false);
    out.push_back(std::move(ex));
  }
  return out;
}

}  // namespace qat::data
