#include "qat/io/gguf_writer.h"

#include <ATen/ATen.h>

#include <filesystem>
#include <fstream>

namespace qat::io {

GgufWriter& GgufWriter::set(const std::string& key, GgufValue value) {
  if (key == "general.alignment") {
    // Validated now, so a bad alignment fails where it is set rather than at write time.
    GgufMetadata probe;
    probe.set(key, value);
    try {
      (void)gguf_alignment(probe, "GGUF writer");
    } catch (const std::runtime_error& e) {
      TORCH_CHECK(false, e.what());
    }
  }
  metadata_.set(key, std::move(value));
  return *this;
}

GgufWriter& GgufWriter::copy_metadata(const GgufMetadata& m) {
  for (const auto& [key, value] : m.entries()) set(key, value);
  return *this;
}

void GgufWriter::check_new_name(const std::string& name) const {
  TORCH_CHECK(!name.empty() && name.size() <= kGgufMaxNameBytes, "GGUF writer: tensor name '", name,
              "' must have 1..", kGgufMaxNameBytes, " bytes");
  for (const auto& t : infos_) {
    TORCH_CHECK(t.name != name, "GGUF writer: duplicate tensor name '", name, "'");
  }
}

void GgufWriter::add_tensor(const std::string& name, const at::Tensor& t, GgmlType type) {
  at::ScalarType st = at::kFloat;
  switch (type) {
    case GgmlType::kF32:
      st = at::kFloat;
      break;
    case GgmlType::kF16:
      st = at::kHalf;
      break;
    case GgmlType::kBF16:
      st = at::kBFloat16;
      break;
    default:
      TORCH_CHECK(false, "GGUF writer: tensor '", name,
                  "': add_tensor writes F32, F16 or BF16, not ", ggml_type_name(type),
                  "; pass block bytes to add_raw_tensor");
  }
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), "GGUF writer: tensor '", name,
              "': expected a floating-point tensor, got ", t.scalar_type());
  const at::Tensor c = t.detach().to(at::kCPU, st).contiguous();
  add_raw_tensor(name, type, c.sizes().vec(), c.reshape({c.numel()}).view(at::kByte));
}

void GgufWriter::add_raw_tensor(const std::string& name, GgmlType type,
                                const std::vector<int64_t>& shape, const at::Tensor& bytes) {
  check_new_name(name);
  TORCH_CHECK(bytes.scalar_type() == at::kByte, "GGUF writer: tensor '", name,
              "': expected uint8 bytes, got ", bytes.scalar_type());
  GgufTensorInfo info;
  info.name = name;
  info.type = type;
  info.ne.assign(shape.rbegin(), shape.rend());
  try {
    info.nbytes = ggml_nbytes(type, info.ne, "GGUF writer: tensor '" + name + "'");
  } catch (const std::runtime_error& e) {
    TORCH_CHECK(false, e.what());
  }
  TORCH_CHECK(static_cast<uint64_t>(bytes.numel()) == info.nbytes, "GGUF writer: tensor '", name,
              "': ", ggml_type_name(type), " ", at::IntArrayRef(shape), " takes ", info.nbytes,
              " bytes, got ", bytes.numel());
  infos_.push_back(std::move(info));
  data_.push_back(bytes.detach().cpu().contiguous());
}

void GgufWriter::write(const std::string& path) const {
  const uint64_t alignment = gguf_alignment(metadata_, path);
  std::vector<GgufTensorInfo> infos = infos_;
  layout_gguf_tensors(infos, alignment);
  const std::string header = encode_gguf_header(metadata_, infos, alignment);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    TORCH_CHECK(out.good(), tmp, ": cannot open for writing");
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    const std::string zeros(alignment, '\0');
    for (size_t i = 0; i < infos.size(); ++i) {
      const uint64_t n = infos[i].nbytes;
      out.write(static_cast<const char*>(data_[i].data_ptr()), static_cast<std::streamsize>(n));
      out.write(zeros.data(),
                static_cast<std::streamsize>((alignment - n % alignment) % alignment));
    }
    out.flush();
    TORCH_CHECK(out.good(), tmp, ": write failed");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  TORCH_CHECK(!ec, path, ": cannot rename ", tmp, ": ", ec.message());
}

}  // namespace qat::io
