#include "data/dataset/text_dataset.h"

#include <stdexcept>

namespace qat::data {

std::vector<Example> tokenize_documents(const std::vector<Document>& documents,
                                        const Tokenizer& tokenizer,
                                        const TextTokenizeOptions& options) {
  const std::optional<int32_t> eos = options.eos_id ? options.eos_id : tokenizer.eos_id();
  if (options.add_eos && !eos) {
    throw std::runtime_error(
        "tokenize_documents: the tokenizer has no EOS token; set TextTokenizeOptions::eos_id or "
        "add_eos = false");
  }
  std::vector<Example> out;
  out.reserve(documents.size());
  for (const auto& doc : documents) {
    Example ex;
    ex.source = doc.source;
    try {
      ex.tokens = tokenizer.encode(doc.text, /*add_special=*/true, options.parse_special);
    } catch (const std::exception& e) {
      throw std::runtime_error(doc.source + ": cannot tokenize the document: " + e.what());
    }
    if (options.add_eos && (ex.tokens.empty() || ex.tokens.back() != *eos))
      ex.tokens.push_back(*eos);
    ex.labels = ex.tokens;
    out.push_back(std::move(ex));
  }
  return out;
}

}  // namespace qat::data
