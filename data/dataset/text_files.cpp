#include "data/dataset/text_files.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "data/tokenizer/utf8.h"

namespace qat::data {
void data_error(const std::string& where, const std::string& what) {
  throw std::runtime_error(where + ": " + what);
}

namespace {

namespace fs = std::filesystem;

std::string at_line(const std::string& path, size_t line) {
  return path + ":" + std::to_string(line);
}

// The whole file; a leading UTF-8 byte order mark is dropped and "\r\n" becomes "\n". Empty
// files and invalid UTF-8 are errors (the position is given as line and column).
std::string read_text_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) data_error(path, "cannot open the file");
  std::ostringstream ss;
  ss << f.rdbuf();
  std::string raw = ss.str();
  if (raw.empty()) data_error(path, "the file is empty");
  if (raw.rfind("\xEF\xBB\xBF", 0) == 0) raw.erase(0, 3);
  const size_t bad = first_invalid_utf8(raw);
  if (bad != std::string::npos) {
    const size_t line = 1 + static_cast<size_t>(std::count(raw.begin(), raw.begin() + bad, '\n'));
    const size_t newline = bad == 0 ? std::string::npos : raw.rfind('\n', bad - 1);
    const size_t column = bad - (newline == std::string::npos ? 0 : newline + 1) + 1;  // bytes
    char hex[8];
    std::snprintf(hex, sizeof(hex), "0x%02X", static_cast<unsigned char>(raw[bad]));
    data_error(at_line(path, line), "invalid UTF-8 at column " + std::to_string(column) +
                                        " (byte " + hex + " at file offset " + std::to_string(bad) +
                                        ")");
  }
  std::string text;
  text.reserve(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i] == '\r' && i + 1 < raw.size() && raw[i + 1] == '\n') continue;
    text.push_back(raw[i]);
  }
  return text;
}

bool is_blank(std::string_view line) {
  return std::all_of(line.begin(), line.end(), [](char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
  });
}

// Calls fn(line_number, line) for every line of `text` (without its "\n").
template <typename Fn>
void for_each_line(const std::string& text, Fn&& fn) {
  size_t begin = 0, line = 1;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    fn(line, std::string_view(text).substr(begin, end - begin));
    begin = end + 1;
    ++line;
  }
}

void split_file(const std::string& path, const TextFileOptions& options,
                std::vector<Document>& out) {
  const std::string text = read_text_file(path);
  const size_t before = out.size();
  if (options.split == DocumentSplit::kWholeFile) {
    if (text.find_first_not_of(" \t\n\r\f\v") != std::string::npos)
      out.push_back({text, at_line(path, 1)});
  } else {
    Document doc;
    for_each_line(text, [&](size_t line, std::string_view s) {
      if (is_blank(s)) {
        if (!doc.text.empty()) out.push_back(std::move(doc));
        doc = Document{};
        return;
      }
      if (doc.text.empty()) {
        doc.source = at_line(path, line);
      } else {
        doc.text.push_back('\n');
      }
      doc.text.append(s);
    });
    if (!doc.text.empty()) out.push_back(std::move(doc));
  }
  if (out.size() == before) data_error(path, "the file holds only whitespace, no document");
}

}  // namespace

std::vector<Document> read_text_documents(const std::string& path, const TextFileOptions& options) {
  std::error_code ec;
  const fs::path p(path);
  if (!fs::exists(p, ec)) data_error(path, "no such file or directory");
  std::vector<Document> docs;
  if (!fs::is_directory(p, ec)) {
    split_file(path, options, docs);
    return docs;
  }
  std::vector<std::string> files;
  for (auto it = fs::recursive_directory_iterator(p, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (it->is_regular_file(ec) && name.size() >= options.extension.size() &&
        name.compare(name.size() - options.extension.size(), std::string::npos,
                     options.extension) == 0) {
      files.push_back(it->path().string());
    }
  }
  if (ec) data_error(path, "cannot list the directory: " + ec.message());
  if (files.empty()) data_error(path, "the directory holds no '*" + options.extension + "' file");
  std::sort(files.begin(), files.end());
  for (const auto& f : files) split_file(f, options, docs);
  return docs;
}

std::vector<JsonRecord> read_json_records(const std::string& path) {
  const std::string text = read_text_file(path);
  std::vector<JsonRecord> records;
  const bool array_file = fs::path(path).extension() == ".json";
  if (array_file) {
    nlohmann::ordered_json doc;
    try {
      doc = nlohmann::ordered_json::parse(text);
    } catch (const nlohmann::ordered_json::parse_error& e) {
      data_error(path, std::string("invalid JSON: ") + e.what());
    }
    if (!doc.is_array())
      data_error(path, std::string("expected a JSON array of records, found ") + doc.type_name());
    for (size_t i = 0; i < doc.size(); ++i)
      records.push_back({std::move(doc[i]), path + ": record " + std::to_string(i)});
  } else {
    for_each_line(text, [&](size_t line, std::string_view s) {
      if (is_blank(s)) return;
      JsonRecord r{{}, at_line(path, line)};
      try {
        r.value = nlohmann::ordered_json::parse(s);
      } catch (const nlohmann::ordered_json::parse_error& e) {
        data_error(r.source, std::string("invalid JSON: ") + e.what());
      }
      records.push_back(std::move(r));
    });
  }
  if (records.empty()) data_error(path, "no records (the file holds only whitespace)");
  for (const auto& r : records) {
    if (!r.value.is_object())
      data_error(r.source, std::string("expected a JSON object, found ") + r.value.type_name());
  }
  return records;
}

const std::string* string_field(const JsonRecord& record, const std::string& name, bool required) {
  const auto it = record.value.find(name);
  if (it == record.value.end() || (!required && it->is_null())) {
    if (required) data_error(record.source, "missing field '" + name + "'");
    return nullptr;
  }
  if (!it->is_string())
    data_error(record.source, "field '" + name + "' must be a string, found " + it->type_name());
  return it->get_ptr<const std::string*>();
}

std::vector<Document> read_jsonl_documents(const std::string& path, const JsonlOptions& options) {
  std::vector<Document> docs;
  for (const auto& r : read_json_records(path)) {
    docs.push_back({*string_field(r, options.text_field), r.source});
  }
  return docs;
}

}  // namespace qat::data
