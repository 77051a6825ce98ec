// On-disk sizes against the formats' theoretical bits: a GGUF Q4_0 file and a bitsandbytes NF4
// checkpoint of a mid-sized random model (rows of 512 and 1536, the SmolLM2 vocabulary) must be
// their tensors at 4.5 / 4.127 bits per weight plus headers and tokenizer, within 2%. The headers
// are measured from the files with our readers, independently of the exporter's own accounting.
#include <filesystem>
#include <fstream>

#include "qat/io/gguf_file.h"
#include "qat/io/safetensors_torch.h"
#include "tests/qat/export/export_models.h"
#include "tests/support/catch_torch.h"

namespace {

namespace fs = std::filesystem;
using namespace qat;

std::shared_ptr<models::LlamaForCausalLM> medium_model() {
  static auto m = test::random_model(test::export_config(/*tied=*/true, 512, 1536, 8, 4), 21);
  return m;
}

exporting::ExportReport export_medium(exporting::ExportOptions o) {
  exporting::ExportSource src;
  src.model = medium_model();
  src.tokenizer = test::smollm_tokenizer();
  src.name = "medium-random";
  return exporting::export_model(src, o);
}

}  // namespace

TEST_CASE("GGUF Q4_0 on disk is its tensors at 4.5 bits plus the header, within 2%",
          "[export][gguf][size]") {
  exporting::ExportOptions o;
  o.format = exporting::ExportFormat::kGguf;
  o.out = test::temp_dir() + "/m.gguf";
  o.gguf_type = io::GgmlType::kQ4_0;
  o.gguf_embed_type = io::GgmlType::kQ4_0;
  const auto r = export_medium(o);
  const int64_t on_disk = static_cast<int64_t>(fs::file_size(o.out));
  const int64_t header = static_cast<int64_t>(io::GgufFile::open(o.out).data_offset());
  // Theoretical: every weight at 4.5 bits (Q4_0: 18 bytes per 32), norms at 32.
  int64_t n_q = 0, n_f32 = 0;
  for (const auto& t : r.tensors) (t.type == "Q4_0" ? n_q : n_f32) += t.numel;
  const double theoretical = static_cast<double>(n_q) * 4.5 / 8 + static_cast<double>(n_f32) * 4;
  CAPTURE(on_disk, header, theoretical, r.theoretical_bytes);
  CHECK(static_cast<double>(r.theoretical_bytes) == Approx(theoretical).epsilon(1e-9));
  CHECK(r.file_bytes == on_disk);
  CHECK(static_cast<double>(on_disk) >= theoretical + static_cast<double>(header));
  CHECK(static_cast<double>(on_disk) <= 1.02 * (theoretical + static_cast<double>(header)));
  CHECK(r.summary().find("on disk") != std::string::npos);
}

TEST_CASE(
    "bitsandbytes NF4 on disk is 4.127 bits per linear weight plus dense tensors and headers, "
    "within 2%",
    "[export][bnb][size]") {
  exporting::ExportOptions o;
  o.format = exporting::ExportFormat::kBnbNf4;
  o.out = test::temp_dir() + "/nf4";
  const auto r = export_medium(o);
  // Headers and non-tensor files, read from disk.
  int64_t on_disk = 0, metadata = 0;
  int64_t nf4_piece_bytes = 0;
  for (const auto& e : fs::directory_iterator(o.out)) {
    const int64_t size = static_cast<int64_t>(e.file_size());
    if (e.path().filename() == "manifest.json") continue;  // written after the sizes were taken
    on_disk += size;
    if (e.path().extension() != ".safetensors") {
      metadata += size;
      continue;
    }
    std::ifstream f(e.path(), std::ios::binary);
    uint64_t n = 0;
    f.read(reinterpret_cast<char*>(&n), 8);
    metadata += 8 + static_cast<int64_t>(n);
    const auto file = io::SafetensorsFile::open(e.path().string());
    for (const auto& name : file.names()) {
      if (name.find("_proj.weight") == std::string::npos)
        continue;  // the NF4 pieces of the linears
      nf4_piece_bytes += static_cast<int64_t>(file.info(name).nbytes());
    }
  }
  double nf4_theoretical = 0, theoretical = 0;
  for (const auto& t : r.tensors) {
    theoretical += t.theoretical_bits * static_cast<double>(t.numel) / 8;
    if (t.type.rfind("NF4", 0) == 0) {
      CHECK(t.theoretical_bits == Approx(4.0 + 8.0 / 64 + 32.0 / (64 * 256)));  // 4.127
      nf4_theoretical += t.theoretical_bits * static_cast<double>(t.numel) / 8;
    }
  }
  CAPTURE(on_disk, metadata, theoretical, nf4_piece_bytes, nf4_theoretical);
  CHECK(r.file_bytes == on_disk);
  // All linear pieces (codes, absmax, nested absmax, both maps, the quant_state JSON).
  CHECK(static_cast<double>(nf4_piece_bytes) >= nf4_theoretical);
  CHECK(static_cast<double>(nf4_piece_bytes) <= 1.02 * nf4_theoretical);
  CHECK(static_cast<double>(on_disk) >= theoretical + static_cast<double>(metadata));
  CHECK(static_cast<double>(on_disk) <= 1.02 * (theoretical + static_cast<double>(metadata)));
}
