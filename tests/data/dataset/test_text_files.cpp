// Raw text readers: .txt files and directories, JSON Lines, JSON records; every hostile input
// is an error that names file:line.
#include "data/dataset/text_files.h"
#include "tests/data/dataset/dataset_support.h"
#include "tests/support/catch_torch.h"

using Catch::Contains;
using qat::data::DocumentSplit;
using qat::data::read_json_records;
using qat::data::read_jsonl_documents;
using qat::data::read_text_documents;
using qat::test::write_file;

TEST_CASE("Text files split into documents on blank-line runs or per file", "[dataset][text]") {
  const std::string dir = qat::test::temp_dir();
  const std::string a = write_file(dir, "corpus/a.txt",
                                   "\xEF\xBB\xBF"
                                   "First line\r\nsecond line\r\n\r\n  \n\n"
                                   "Second doc\n\t\nThird doc\n");
  write_file(dir, "corpus/sub/b.txt", "Only one\nparagraph");
  write_file(dir, "corpus/notes.md", "not read");

  SECTION("blank lines (default)") {
    const auto docs = read_text_documents(a);
    REQUIRE(docs.size() == 3);
    CHECK(docs[0].text == "First line\nsecond line");  // BOM and CR dropped
    CHECK(docs[0].source == a + ":1");
    CHECK(docs[1].text == "Second doc");
    CHECK(docs[1].source == a + ":6");
    CHECK(docs[2].text == "Third doc");
    CHECK(docs[2].source == a + ":8");
  }
  SECTION("a directory, recursively and sorted, only .txt") {
    const auto docs = read_text_documents(dir + "/corpus");
    REQUIRE(docs.size() == 4);
    CHECK(docs[3].text == "Only one\nparagraph");
    CHECK_THAT(docs[3].source, Contains("sub/b.txt:1"));
  }
  SECTION("one document per file") {
    qat::data::TextFileOptions o;
    o.split = DocumentSplit::kWholeFile;
    const auto docs = read_text_documents(dir + "/corpus", o);
    REQUIRE(docs.size() == 2);
    CHECK(docs[0].text == "First line\nsecond line\n\n  \n\nSecond doc\n\t\nThird doc\n");
    CHECK(docs[1].text == "Only one\nparagraph");
  }
}

TEST_CASE("Text readers reject missing, empty, blank and non-UTF-8 input with file:line",
          "[dataset][text][errors]") {
  const std::string dir = qat::test::temp_dir();
  CHECK_THROWS_WITH(read_text_documents(dir + "/nope.txt"), Contains("no such file"));
  CHECK_THROWS_WITH(read_text_documents(write_file(dir, "empty.txt", "")),
                    Contains("empty.txt: the file is empty"));
  CHECK_THROWS_WITH(read_text_documents(write_file(dir, "blank.txt", " \n\n\t\n")),
                    Contains("only whitespace"));
  CHECK_THROWS_WITH(read_text_documents(write_file(dir, "bad.txt", "ok\nab\xC3(cd\n")),
                    Contains("bad.txt:2: invalid UTF-8 at column 3 (byte 0xC3"));
  CHECK_THROWS_WITH(read_text_documents(write_file(dir, "overlong.txt", "\xC0\xAF")),
                    Contains("overlong.txt:1: invalid UTF-8 at column 1"));
  std::filesystem::create_directories(dir + "/nodocs");
  write_file(dir, "nodocs/x.json", "{}");
  CHECK_THROWS_WITH(read_text_documents(dir + "/nodocs"), Contains("holds no '*.txt' file"));
}

TEST_CASE("JSON Lines documents come from a configurable text field", "[dataset][jsonl]") {
  const std::string dir = qat::test::temp_dir();
  const std::string path = write_file(
      dir, "d.jsonl", "{\"text\": \"hello\", \"body\": \"x\"}\n\n{\"text\": \"w\\u00f6rld\\n\"}\n");
  const auto docs = read_jsonl_documents(path);
  REQUIRE(docs.size() == 2);
  CHECK(docs[0].text == "hello");
  CHECK(docs[1].text == "w\xC3\xB6rld\n");
  CHECK(docs[1].source == path + ":3");
  CHECK_THROWS_WITH(read_jsonl_documents(path, {"body"}),
                    Contains("d.jsonl:3: missing field 'body'"));
}

TEST_CASE("JSON Lines errors name the line and what was expected", "[dataset][jsonl][errors]") {
  const std::string dir = qat::test::temp_dir();
  auto err = [&](const std::string& content, const std::string& expected) {
    CAPTURE(content);
    CHECK_THROWS_WITH(read_jsonl_documents(write_file(dir, "e.jsonl", content)),
                      Contains(expected));
  };
  err("{\"text\": \"a\"}\n{\"text\": \"b\"\n", "e.jsonl:2: invalid JSON");
  err("{\"text\": 3}\n", "e.jsonl:1: field 'text' must be a string, found number");
  err("{\"text\": null}\n", "field 'text' must be a string, found null");
  err("[1, 2]\n", "e.jsonl:1: expected a JSON object, found array");
  err("\"just a string\"\n", "expected a JSON object, found string");
  err("{\"txt\": \"a\"}\n", "e.jsonl:1: missing field 'text'");
  err("\n  \n", "no records");
  err("", "the file is empty");
  err("{\"text\": \"a\"}\n{\"text\": \"\xFF\"}\n", "e.jsonl:2: invalid UTF-8 at column 11");
}

TEST_CASE("JSON array files give records numbered by index", "[dataset][jsonl]") {
  const std::string dir = qat::test::temp_dir();
  const auto recs =
      read_json_records(write_file(dir, "a.json", "[{\"instruction\": \"x\"},\n {\"b\": 2}]"));
  REQUIRE(recs.size() == 2);
  CHECK_THAT(recs[1].source, Contains("a.json: record 1"));
  CHECK_THROWS_WITH(read_json_records(write_file(dir, "o.json", "{\"a\": 1}")),
                    Contains("expected a JSON array of records, found object"));
  CHECK_THROWS_WITH(read_json_records(write_file(dir, "n.json", "[{\"a\": 1}, 7]")),
                    Contains("n.json: record 1: expected a JSON object, found number"));
  CHECK_THROWS_WITH(read_json_records(write_file(dir, "t.json", "[{\"a\": 1},")),
                    Contains("t.json: invalid JSON"));
}
