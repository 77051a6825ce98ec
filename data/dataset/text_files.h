// Readers for raw text: plain .txt files (a file or a directory of them) and JSON Lines with a
// text field, plus the record reader the instruction datasets share. Input is hostile: empty
// files, invalid UTF-8, bad JSON, missing fields and wrong types are std::runtime_error messages
// that start with "file:line:" and say what was expected and found.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace qat::data {

// Throws std::runtime_error("<where>: <what>"), the form of every data error (where: "file:line").
[[noreturn]] void data_error(const std::string& where, const std::string& what);

// One document of raw text and where it starts ("file:line").
struct Document {
  std::string text;
  std::string source;
};

// How a .txt file is cut into documents.
enum class DocumentSplit {
  // Default: documents are separated by runs of blank (empty or whitespace-only) lines, i.e.
  // paragraphs. Suits one file holding many documents (WikiText, books) and gives the
  // train/held-out split many units to choose from. Lines inside a document keep their "\n".
  kBlankLines,
  // The whole file is one document (a directory of articles).
  kWholeFile,
};

struct TextFileOptions {
  DocumentSplit split = DocumentSplit::kBlankLines;
  // In a directory: files whose name ends with this are read (recursively, sorted by path so the
  // order is the same on every machine).
  std::string extension = ".txt";
};

// Reads `path`, a file or a directory. "\r\n" line ends become "\n"; a UTF-8 BOM is dropped.
// Errors: missing path, a directory without matching files, an empty file or one with no
// non-blank text, invalid UTF-8 (with line and column).
std::vector<Document> read_text_documents(const std::string& path,
                                          const TextFileOptions& options = {});

struct JsonlOptions {
  std::string text_field = "text";
};

// One document per JSON Lines record: {"text": "..."} (field name configurable). Blank lines are
// skipped; every other line must be a JSON object whose field is a string.
std::vector<Document> read_jsonl_documents(const std::string& path,
                                           const JsonlOptions& options = {});

// One JSON record and where it came from.
struct JsonRecord {
  nlohmann::ordered_json value;  // ordered: a chat template's tojson keeps the key order
  std::string source;            // "file:line" for JSON Lines, "file: record N" for a JSON array
};

// The records of a ".jsonl" file (one object per non-blank line) or of a ".json" file holding an
// array of objects (Alpaca's alpaca_data.json). Any other extension is read as JSON Lines.
// Every record is checked to be an object.
std::vector<JsonRecord> read_json_records(const std::string& path);

// The string field `name` of a record, or an error naming the record, the field and the type
// found. Returns nullptr when the field is absent and `required` is false.
const std::string* string_field(const JsonRecord& record, const std::string& name,
                                bool required = true);

}  // namespace qat::data
