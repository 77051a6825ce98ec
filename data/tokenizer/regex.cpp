#include "data/tokenizer/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <stdexcept>

#include "data/tokenizer/utf8.h"

namespace qat::data {

struct Regex::Impl {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Impl() {
    if (code) pcre2_code_free(code);
  }
};

namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof(buf));
  return std::string(reinterpret_cast<const char*>(buf));
}

// Match data is per call (a Regex is shared by every thread that encodes); its size is tiny.
struct MatchData {
  explicit MatchData(const pcre2_code* code)
      : md(pcre2_match_data_create_from_pattern(code, nullptr)) {
    if (!md) throw std::runtime_error("regex: out of memory creating PCRE2 match data");
  }
  ~MatchData() { pcre2_match_data_free(md); }
  pcre2_match_data* md;
};

}  // namespace

Regex::Regex(const std::string& pattern, const std::string& what)
    : pattern_(pattern), impl_(std::make_unique<Impl>()) {
  int err = 0;
  PCRE2_SIZE err_offset = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                              PCRE2_UTF | PCRE2_UCP, &err, &err_offset, nullptr);
  if (!impl_->code) {
    throw std::invalid_argument(what + ": invalid regex '" + pattern + "': " + pcre2_message(err) +
                                " at offset " + std::to_string(err_offset));
  }
  // JIT is an optimization only: a build of PCRE2 without it still matches the same strings.
  impl_->jit = pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() = default;

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> out;
  MatchData data(impl_->code);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t start = 0;
  while (start <= text.size()) {
    const int rc = impl_->jit ? pcre2_jit_match(impl_->code, subject, text.size(), start,
                                                PCRE2_NO_UTF_CHECK, data.md, nullptr)
                              : pcre2_match(impl_->code, subject, text.size(), start,
                                            PCRE2_NO_UTF_CHECK, data.md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      throw std::runtime_error("regex '" + pattern_ + "': matching failed: " + pcre2_message(rc));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.md);
    const size_t b = ov[0], e = ov[1];
    if (e <= b) {
      // An empty match splits nothing (HF drops empty pieces); step over one character so the
      // scan always advances.
      if (b >= text.size()) break;
      start = b + utf8_length(static_cast<unsigned char>(text[b]));
      continue;
    }
    out.emplace_back(b, e);
    start = e;
  }
  return out;
}

std::string regex_escape(std::string_view literal) {
  // \Q...\E quotes everything except a literal "\E", which is spliced in escaped.
  std::string out = "\\Q";
  size_t pos = 0;
  while (true) {
    const size_t e = literal.find("\\E", pos);
    if (e == std::string_view::npos) {
      out.append(literal.substr(pos));
      break;
    }
    out.append(literal.substr(pos, e - pos));
    out += "\\E\\\\E\\Q";
    pos = e + 2;
  }
  return out + "\\E";
}

}  // namespace qat::data
