#include "data/tokenizer/sentencepiece_tokenizer.h"

#include <sentencepiece_processor.h>

#include <cstring>
#include <stdexcept>

#include "data/tokenizer/gguf_tokenizer.h"
#include "data/tokenizer/utf8.h"

namespace qat::data {

SentencePieceTokenizer::SentencePieceTokenizer(const std::string& path)
    : source_(path), sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  const auto status = sp_->Load(path);
  if (!status.ok()) {
    throw std::runtime_error("cannot load SentencePiece model '" + path +
                             "': " + status.ToString());
  }
  init_special();
}

SentencePieceTokenizer::SentencePieceTokenizer(const std::string& serialized_proto,
                                               const std::string& source)
    : source_(source), sp_(std::make_unique<sentencepiece::SentencePieceProcessor>()) {
  const auto status = sp_->LoadFromSerializedProto(serialized_proto);
  if (!status.ok()) {
    throw std::runtime_error(source + ": invalid SentencePiece model: " + status.ToString());
  }
  init_special();
}

SentencePieceTokenizer::~SentencePieceTokenizer() = default;

void SentencePieceTokenizer::init_special() {
  // libsentencepiece reports -1 for ids the model does not define.
  auto opt = [](int id) { return id >= 0 ? std::optional<int32_t>(id) : std::nullopt; };
  special_ = {opt(sp_->bos_id()), opt(sp_->eos_id()), opt(sp_->unk_id()), opt(sp_->pad_id())};
}

std::optional<int32_t> SentencePieceTokenizer::token_to_id(std::string_view token) const {
  const int id = sp_->PieceToId(token);
  // PieceToId answers unk_id for unknown pieces: only the unk piece itself may map there.
  if (id == sp_->unk_id() && sp_->IdToPiece(id) != token) return std::nullopt;
  return id;
}

std::string SentencePieceTokenizer::id_to_token(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    throw std::out_of_range(source_ + ": token id " + std::to_string(id) +
                            " is not in the vocabulary (size " + std::to_string(vocab_size()) +
                            ")");
  }
  return sp_->IdToPiece(id);
}

int32_t SentencePieceTokenizer::vocab_size() const {
  return sp_->GetPieceSize();
}

bool SentencePieceTokenizer::is_special(int32_t id) const {
  return id >= 0 && id < vocab_size() && (sp_->IsControl(id) || sp_->IsUnknown(id));
}

std::vector<int32_t> SentencePieceTokenizer::encode_impl(std::string_view text, bool add_special,
                                                         bool /*parse_special*/) const {
  const size_t bad = first_invalid_utf8(text);
  if (bad != std::string_view::npos) {
    throw std::invalid_argument(source_ + ": encode: input is not valid UTF-8 at byte " +
                                std::to_string(bad));
  }
  std::vector<int> ids;
  const auto status = sp_->Encode(text, &ids);
  if (!status.ok()) throw std::runtime_error(source_ + ": encode failed: " + status.ToString());
  std::vector<int32_t> out;
  out.reserve(ids.size() + 2);
  if (add_special && add_bos_ && special_.bos) out.push_back(*special_.bos);
  out.insert(out.end(), ids.begin(), ids.end());
  if (add_special && add_eos_ && special_.eos) out.push_back(*special_.eos);
  return out;
}

std::string SentencePieceTokenizer::decode_impl(const std::vector<int32_t>& ids,
                                                bool skip_special) const {
  std::vector<int> in;
  in.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab_size()) {
      throw std::out_of_range(source_ + ": decode: token id " + std::to_string(id) +
                              " is outside the vocabulary [0, " + std::to_string(vocab_size()) +
                              ")");
    }
    // libsentencepiece always drops control tokens; keeping them means spelling them out.
    if (skip_special || !sp_->IsControl(id)) in.push_back(id);
  }
  std::string text;
  if (skip_special) {
    const auto status = sp_->Decode(in, &text);
    if (!status.ok()) throw std::runtime_error(source_ + ": decode failed: " + status.ToString());
    return text;
  }
  // Decode runs of ordinary ids with the library and splice control pieces in between.
  std::vector<int> run;
  std::string piece_text;
  auto flush = [&]() {
    if (run.empty()) return;
    std::string part;
    const auto status = sp_->Decode(run, &part);
    if (!status.ok()) throw std::runtime_error(source_ + ": decode failed: " + status.ToString());
    text += part;
    run.clear();
  };
  for (int32_t id : ids) {
    if (sp_->IsControl(id)) {
      flush();
      text += sp_->IdToPiece(id);
    } else {
      run.push_back(id);
    }
  }
  flush();
  return text;
}

namespace {

// Minimal protobuf wire encoding for the few ModelProto fields a SentencePiece BPE model needs
// (field numbers from sentencepiece_model.proto).
void put_varint(std::string& out, uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}
void put_tag(std::string& out, int field, int wire) {
  put_varint(out, (field << 3) | wire);
}
void put_bytes(std::string& out, int field, const std::string& s) {
  put_tag(out, field, 2);
  put_varint(out, s.size());
  out += s;
}
void put_uint(std::string& out, int field, uint64_t v) {
  put_tag(out, field, 0);
  put_varint(out, v);
}
void put_float(std::string& out, int field, float f) {
  put_tag(out, field, 5);
  uint32_t bits;
  std::memcpy(&bits, &f, 4);
  for (int i = 0; i < 4; ++i) out += static_cast<char>((bits >> (8 * i)) & 0xFF);
}

}  // namespace

std::unique_ptr<Tokenizer> sentencepiece_from_gguf(const GgufTokenizerData& d) {
  const std::string src = "GGUF tokenizer metadata";
  if (d.scores.size() != d.tokens.size()) {
    throw std::invalid_argument(src + ": tokenizer.ggml.scores has " +
                                std::to_string(d.scores.size()) + " entries, expected " +
                                std::to_string(d.tokens.size()) + " (one per token)");
  }
  std::string proto;
  for (size_t i = 0; i < d.tokens.size(); ++i) {
    int32_t type = d.token_types.empty() ? 1 : d.token_types[i];
    if (type < 1 || type > 6) {
      throw std::invalid_argument(src + ": tokenizer.ggml.token_type[" + std::to_string(i) +
                                  "] = " + std::to_string(type) + ", expected 1..6");
    }
    std::string piece;
    put_bytes(piece, 1, d.tokens[i]);
    put_float(piece, 2, d.scores[i]);
    put_uint(piece, 3, static_cast<uint64_t>(type));  // GGUF types equal SentencePiece's enum
    put_bytes(proto, 1, piece);
  }
  std::string trainer;
  put_uint(trainer, 3, 2);   // model_type = BPE
  put_uint(trainer, 35, 1);  // byte_fallback
  auto piece_of = [&](std::optional<int32_t> id, const char* fallback) {
    return id ? d.tokens[*id] : std::string(fallback);
  };
  put_bytes(trainer, 46, piece_of(d.bos_id, "<s>"));   // bos_piece
  put_bytes(trainer, 47, piece_of(d.eos_id, "</s>"));  // eos_piece
  put_bytes(proto, 2, trainer);
  std::string normalizer;
  put_bytes(normalizer, 1, "identity");
  put_uint(normalizer, 3, d.add_space_prefix.value_or(true) ? 1 : 0);  // add_dummy_prefix
  put_uint(normalizer, 4, 0);  // remove_extra_whitespaces: llama.cpp keeps them
  put_uint(normalizer, 5, 1);  // escape_whitespaces
  put_bytes(proto, 3, normalizer);
  auto tok = std::make_unique<SentencePieceTokenizer>(proto, src);
  tok->set_add_bos(d.add_bos);
  tok->set_add_eos(d.add_eos);
  SpecialTokenIds ids{tok->bos_id(), tok->eos_id(), tok->unk_id(), tok->pad_id()};
  if (d.bos_id) ids.bos = d.bos_id;
  if (d.eos_id) ids.eos = d.eos_id;
  if (d.unk_id) ids.unk = d.unk_id;
  if (d.pad_id) ids.pad = d.pad_id;
  tok->set_special_ids(ids);
  return tok;
}

}  // namespace qat::data
