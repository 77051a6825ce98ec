// Supervised fine-tuning examples whose prompt is masked out of the loss:
//   - Alpaca records {instruction, input, output} in Stanford Alpaca's prompt template;
//   - chat records {"messages": [{"role", "content"}, ...]} rendered with the model's own
//     ChatTemplate, where only the assistant turns are in the loss.
// Records come from read_json_records (.jsonl, or a .json array); every malformed record is an
// error naming its file:line.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "data/dataset/example.h"
#include "data/dataset/text_files.h"
#include "data/tokenizer/chat_template.h"
#include "data/tokenizer/tokenizer.h"

namespace qat::data {

// Stanford Alpaca's templates (github.com/tatsu-lab/stanford_alpaca, train.py). "{instruction}"
// and "{input}" are replaced by the record's fields; the response follows the prompt directly.
inline constexpr const char* kAlpacaPromptWithInput =
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n";
inline constexpr const char* kAlpacaPromptNoInput =
    "Below is an instruction that describes a task. Write a response that appropriately "
    "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n";

struct AlpacaOptions {
  std::string prompt_with_input = kAlpacaPromptWithInput;
  std::string prompt_no_input = kAlpacaPromptNoInput;  // used when "input" is absent or ""
  std::optional<int32_t> eos_id;                       // default: the tokenizer's
};

// Fills `tmpl`'s "{instruction}" and "{input}" placeholders.
std::string alpaca_prompt(const std::string& instruction, const std::string& input,
                          const AlpacaOptions& options = {});

// tokens = encode(prompt, add_special=true) ++ encode(output, add_special=false) ++ [EOS];
// labels are kIgnoreIndex over the prompt. Prompt and response are tokenized separately so the
// boundary is exact. Fields: "instruction" and "output" (strings, required), "input" (string,
// optional).
std::vector<Example> alpaca_examples(const std::vector<JsonRecord>& records,
                                     const Tokenizer& tokenizer, const AlpacaOptions& options = {});

struct ChatOptions {
  // Variables the template may use; default: the tokenizer's BOS/EOS token strings.
  std::optional<std::string> bos_token, eos_token;
};

// Renders each conversation with `chat_template` (tokenized with add_special=false and
// parse_special=true, as transformers' apply_chat_template does) and keeps in the loss exactly
// the tokens each assistant turn adds: for assistant message k,
//   before = render(messages[0..k), add_generation_prompt=true)
//   after  = render(messages[0..k], add_generation_prompt=false)
// and the tokens of `after` beyond those of `before` (the content and the end-of-turn marker)
// get labels. Each rendering's token ids must extend the previous one's (the prefix property);
// a template that rewrites earlier turns (e.g. drops past reasoning) breaks it and is an error
// naming the record and the message. Records need a non-empty "messages" array of objects with
// string "role" and "content", and at least one "assistant" message.
std::vector<Example> chat_examples(const std::vector<JsonRecord>& records,
                                   const Tokenizer& tokenizer, const ChatTemplate& chat_template,
                                   const ChatOptions& options = {});

}  // namespace qat::data
