// Tokenized examples with SmolLM2's real tokenizer and chat template: plain documents (EOS, no
// BOS), Alpaca prompts masked out of the loss, chat conversations where only assistant turns are
// in the loss.
#include "data/dataset/instruction_dataset.h"
#include "data/dataset/text_dataset.h"
#include "tests/data/dataset/dataset_support.h"
#include "tests/support/catch_torch.h"

using Catch::Contains;
using qat::data::Example;
using qat::data::JsonRecord;
using qat::data::kIgnoreIndex;

namespace {

JsonRecord record(const std::string& json, const std::string& source = "mem:1") {
  return {nlohmann::ordered_json::parse(json), source};
}

// The text of each maximal run of positions that are in the loss.
std::vector<std::string> labelled_spans(const Example& ex, const qat::data::Tokenizer& tok) {
  std::vector<std::string> spans;
  std::vector<int32_t> run;
  for (size_t i = 0; i <= ex.labels.size(); ++i) {
    if (i < ex.labels.size() && ex.labels[i] != kIgnoreIndex) {
      REQUIRE(ex.labels[i] == ex.tokens[i]);
      run.push_back(ex.labels[i]);
    } else if (!run.empty()) {
      spans.push_back(tok.decode(run));
      run.clear();
    }
  }
  return spans;
}

}  // namespace

TEST_CASE("Documents tokenize with the tokenizer's BOS policy and a closing EOS",
          "[dataset][text]") {
  const auto& tok = *qat::test::smollm2().tokenizer;
  const std::vector<qat::data::Document> docs = {{"Hello world", "a:1"},
                                                 {"say <|im_end|> plainly", "a:3"}};
  const auto ex = qat::data::tokenize_documents(docs, tok);
  REQUIRE(ex.size() == 2);
  auto expected = tok.encode("Hello world", false);
  expected.push_back(2);  // <|im_end|>, SmolLM2's EOS; its GGUF says add_bos_token = false
  CHECK(ex[0].tokens == expected);
  CHECK(ex[0].labels == ex[0].tokens);
  CHECK(ex[0].source == "a:1");
  // Special-token text in a document stays text: the only id 2 is the appended EOS.
  CHECK(std::count(ex[1].tokens.begin(), ex[1].tokens.end(), 2) == 1);
  CHECK(tok.decode(ex[1].tokens) == "say <|im_end|> plainly<|im_end|>");

  qat::data::TextTokenizeOptions o;
  o.eos_id = 0;
  CHECK(qat::data::tokenize_documents(docs, tok, o)[0].tokens.back() == 0);
}

TEST_CASE("Alpaca examples mask the prompt and train on the response and EOS",
          "[dataset][alpaca]") {
  const auto& tok = *qat::test::smollm2().tokenizer;
  const std::vector<JsonRecord> recs = {
      record(R"({"instruction": "Add the numbers.", "input": "2 and 3", "output": "5"})"),
      record(R"({"instruction": "Name a color.", "input": "", "output": "Blue."})"),
      record(R"({"instruction": "Name a fruit.", "output": "Apple."})")};
  const auto ex = qat::data::alpaca_examples(recs, tok);
  REQUIRE(ex.size() == 3);

  const std::string prompt0 = qat::data::alpaca_prompt("Add the numbers.", "2 and 3");
  CHECK(prompt0 ==
        "Below is an instruction that describes a task, paired with an input that provides "
        "further context. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\nAdd the numbers.\n\n### Input:\n2 and 3\n\n### Response:\n");
  const auto p0 = tok.encode(prompt0, true);
  REQUIRE(ex[0].tokens.size() > p0.size());
  CHECK(std::equal(p0.begin(), p0.end(), ex[0].tokens.begin()));
  for (size_t i = 0; i < p0.size(); ++i) CHECK(ex[0].labels[i] == kIgnoreIndex);
  CHECK(labelled_spans(ex[0], tok) == std::vector<std::string>{"5<|im_end|>"});

  // No input (empty or absent): the shorter template.
  for (int i : {1, 2}) {
    CAPTURE(i);
    const auto first_label = std::find_if(ex[i].labels.begin(), ex[i].labels.end(),
                                          [](int32_t l) { return l != kIgnoreIndex; });
    const std::string prompt = tok.decode(std::vector<int32_t>(
        ex[i].tokens.begin(), ex[i].tokens.begin() + (first_label - ex[i].labels.begin())));
    CHECK_THAT(prompt, Contains("Below is an instruction that describes a task. Write"));
    CHECK_THAT(prompt, !Contains("### Input:"));
  }
  CHECK(labelled_spans(ex[1], tok) == std::vector<std::string>{"Blue.<|im_end|>"});
  CHECK(labelled_spans(ex[2], tok) == std::vector<std::string>{"Apple.<|im_end|>"});
  // A placeholder written inside a field is not expanded again.
  CHECK(qat::data::alpaca_prompt("say {input}", "") ==
        "Below is an instruction that describes a task. Write a response that appropriately "
        "completes the request.\n\n### Instruction:\nsay {input}\n\n### Response:\n");
}

TEST_CASE("Alpaca records with missing or mistyped fields are errors naming the record",
          "[dataset][alpaca][errors]") {
  const auto& tok = *qat::test::smollm2().tokenizer;
  auto err = [&](const std::string& json, const std::string& expected) {
    CAPTURE(json);
    CHECK_THROWS_WITH(qat::data::alpaca_examples({record(json, "f.jsonl:7")}, tok),
                      Contains(expected));
  };
  err(R"({"input": "x", "output": "y"})", "f.jsonl:7: missing field 'instruction'");
  err(R"({"instruction": "x"})", "f.jsonl:7: missing field 'output'");
  err(R"({"instruction": "x", "input": 4, "output": "y"})",
      "f.jsonl:7: field 'input' must be a string, found number");
  err(R"({"instruction": ["x"], "output": "y"})",
      "field 'instruction' must be a string, found array");
  err(R"({"instruction": "x", "output": ""})", "field 'output' is empty");
}

TEST_CASE("Chat examples put exactly the assistant turns of SmolLM2's template in the loss",
          "[dataset][chat]") {
  const auto& s = qat::test::smollm2();
  const auto& tok = *s.tokenizer;
  const auto rec = record(R"({"messages": [
      {"role": "user", "content": "Hi"},
      {"role": "assistant", "content": "Hello! How can I help?"},
      {"role": "user", "content": "What is 2+2?"},
      {"role": "assistant", "content": "4."},
      {"role": "user", "content": "Thanks"}]})");
  const auto ex = qat::data::chat_examples({rec}, tok, *s.chat_template);
  REQUIRE(ex.size() == 1);
  // The tokens are the whole rendered conversation, tokenized once.
  const std::string full = s.chat_template->render(rec.value["messages"], false);
  CHECK_THAT(full, Contains("You are a helpful AI assistant named SmolLM"));
  CHECK(ex[0].tokens == tok.encode(full, false, true));
  CHECK(labelled_spans(ex[0], tok) ==
        std::vector<std::string>{"Hello! How can I help?<|im_end|>\n", "4.<|im_end|>\n"});
  // The generation prompt itself ("<|im_start|>assistant\n") is not trained on.
  const auto im_start = *tok.token_to_id("<|im_start|>");
  for (size_t i = 0; i < ex[0].tokens.size(); ++i)
    if (ex[0].tokens[i] == im_start) CHECK(ex[0].labels[i] == kIgnoreIndex);

  // A system message replaces the default one.
  const auto sys =
      qat::data::chat_examples({record(R"({"messages": [{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "Hi"},
                               {"role": "assistant", "content": "Hey."}]})")},
                               tok, *s.chat_template);
  CHECK(labelled_spans(sys[0], tok) == std::vector<std::string>{"Hey.<|im_end|>\n"});
  CHECK_THAT(tok.decode(sys[0].tokens), !Contains("SmolLM"));
}

TEST_CASE("Chat records that are malformed or a template without the prefix property are errors",
          "[dataset][chat][errors]") {
  const auto& s = qat::test::smollm2();
  auto err = [&](const std::string& json, const std::string& expected) {
    CAPTURE(json);
    CHECK_THROWS_WITH(
        qat::data::chat_examples({record(json, "c.jsonl:3")}, *s.tokenizer, *s.chat_template),
        Contains(expected));
  };
  err(R"({"conversation": []})", "c.jsonl:3: missing field 'messages'");
  err(R"({"messages": {}})", "field 'messages' must be an array, found object");
  err(R"({"messages": []})", "field 'messages' is empty");
  err(R"({"messages": ["hi"]})", "c.jsonl:3: messages[0]: expected an object, found string");
  err(R"({"messages": [{"role": "user"}]})", "messages[0]: missing field 'content'");
  err(R"({"messages": [{"role": "user", "content": "a"}, {"role": 1, "content": "b"}]})",
      "messages[1]: field 'role' must be a string, found number");
  err(R"({"messages": [{"role": "user", "content": "a"}]})", "no 'assistant' message");

  // Marks the last message: earlier renderings are not prefixes of later ones.
  const qat::data::ChatTemplate marks_last(
      "{% for m in messages %}{% if loop.last %}LAST {% endif %}{{ m['role'] }}: "
      "{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}");
  CHECK_THROWS_WITH(
      qat::data::chat_examples({record(R"({"messages": [{"role": "user", "content": "a"},
                                                        {"role": "assistant", "content": "b"}]})",
                                       "c.jsonl:9")},
                               *s.tokenizer, marks_last),
      Contains("c.jsonl:9: the chat template breaks the prefix property") &&
          Contains("messages[1] (assistant)"));
}
