// Reference data for the tokenizer tests, produced by
// tests/ref/tokenizer_ref.py and chat_template_ref.py (HF tokenizers, sentencepiece, transformers).
#pragma once

#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/support/helpers.h"

namespace qat::test {

// A directory shared by the test processes of this machine; the scripts regenerate their output
// there only when the script changed (they stamp it with their own hash).
inline std::string shared_ref_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() / ("qat-tokenizer-ref-" + name)).string();
}

// Runs `tokenizer_ref.py <command> <dir>` (once per process) and returns the directory.
inline const std::string& tokenizer_ref_dir(const std::string& command) {
  static std::map<std::string, std::string> dirs;
  auto it = dirs.find(command);
  if (it != dirs.end()) return it->second;
  const std::string dir = shared_ref_path(command);
  const int rc = run_python("tokenizer_ref.py", {command, dir});
  if (rc != 0) FAIL("tests/ref/tokenizer_ref.py " << command << " failed with status " << rc);
  return dirs.emplace(command, dir).first->second;
}

template <typename Json = nlohmann::json>
Json read_json(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) FAIL("cannot open " << path);
  return Json::parse(f);
}

}  // namespace qat::test
