#include "cprfl/io/tensor_file.h"

#include <zlib.h>

#include <cstring>

#include "cprfl/common/error.h"
#include "cprfl/common/text.h"
#include "cprfl/io/atomic_file.h"

namespace cprfl {
namespace {

constexpr char kMagic[8] = {'C', 'P', 'R', 'F', 'L', 'T', 'F', '\0'};
constexpr std::uint32_t kVersion = 1;
constexpr std::size_t kAlign = 64;

const std::map<std::string, torch::Dtype>& dtype_names() {
  static const std::map<std::string, torch::Dtype> names{
      {"float16", torch::kHalf}, {"float32", torch::kFloat},  {"float64", torch::kDouble}, {"int8", torch::kChar},
      {"int32", torch::kInt},    {"int64", torch::kLong},     {"uint8", torch::kByte},     {"bool", torch::kBool}};
  return names;
}

std::string dtype_name(torch::Dtype dtype) {
  for (auto& [name, value] : dtype_names())
    if (value == dtype) return name;
  throw Error(std::string("tensor file: unsupported dtype ") + c10::toString(dtype));
}

template <typename T>
void append_le(std::string& out, T value) {
  char bytes[sizeof(T)];
  std::memcpy(bytes, &value, sizeof(T));  // the project targets little-endian hosts
  out.append(bytes, sizeof(T));
}

template <typename T>
T read_le(std::string_view bytes, std::size_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

std::size_t aligned(std::size_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// A size or offset from the header: a non-negative JSON integer (a float or a negative number
// is refused; converting an out-of-range float would be undefined behaviour).
std::uint64_t header_size(const nlohmann::json& value, const std::string& what, const std::string& name) {
  if (!value.is_number_unsigned()) fail_in(name, what + " is not a non-negative integer");
  return value.get<std::uint64_t>();
}

std::uint32_t crc_of(std::string_view bytes) {
  uLong crc = crc32(0L, Z_NULL, 0);
  std::size_t offset = 0;
  while (offset < bytes.size()) {
    uInt chunk = static_cast<uInt>(std::min<std::size_t>(bytes.size() - offset, 1u << 30));
    crc = crc32(crc, reinterpret_cast<const Bytef*>(bytes.data() + offset), chunk);
    offset += chunk;
  }
  return static_cast<std::uint32_t>(crc);
}

}  // namespace

std::string serialize_tensor_file(const TensorFile& file) {
  nlohmann::json table = nlohmann::json::array();
  std::vector<torch::Tensor> contiguous;
  std::size_t offset = 0;
  for (const auto& [name, tensor] : file.tensors) {
    auto cpu = tensor.detach().to(torch::kCPU).contiguous();
    std::size_t nbytes = static_cast<std::size_t>(cpu.numel()) * cpu.element_size();
    table.push_back({{"name", name}, {"dtype", dtype_name(cpu.scalar_type())}, {"shape", cpu.sizes().vec()},
                     {"offset", offset}, {"nbytes", nbytes}});
    contiguous.push_back(cpu);
    offset = aligned(offset + nbytes);
  }
  std::string header = nlohmann::json{{"meta", file.meta}, {"tensors", table}}.dump();
  std::string out(kMagic, sizeof kMagic);
  append_le<std::uint32_t>(out, kVersion);
  append_le<std::uint64_t>(out, header.size());
  out += header;
  out.resize(aligned(out.size()), '\0');
  std::size_t data_start = out.size();
  out.resize(data_start + offset, '\0');
  std::size_t index = 0;
  for (const auto& entry : table) {
    const auto& tensor = contiguous[index++];
    std::size_t nbytes = entry["nbytes"].get<std::size_t>();
    if (nbytes) std::memcpy(out.data() + data_start + entry["offset"].get<std::size_t>(), tensor.data_ptr(), nbytes);
  }
  append_le<std::uint32_t>(out, crc_of(out));
  return out;
}

TensorFile parse_tensor_file(std::string_view bytes, const std::string& name) {
  const std::size_t prefix = sizeof kMagic + 4 + 8;
  if (bytes.size() < prefix + 4 || std::memcmp(bytes.data(), kMagic, sizeof kMagic) != 0)
    fail_in(name, "not a cprfl model or checkpoint file (bad magic or too short)");
  auto version = read_le<std::uint32_t>(bytes, sizeof kMagic);
  if (version != kVersion)
    fail_in(name, "file format version " + std::to_string(version) + " is not supported (this build reads version " +
                      std::to_string(kVersion) + ")");
  std::uint32_t stored_crc = read_le<std::uint32_t>(bytes, bytes.size() - 4);
  if (crc_of(bytes.substr(0, bytes.size() - 4)) != stored_crc)
    fail_in(name, "checksum mismatch: the file is truncated or corrupted");
  auto header_length = read_le<std::uint64_t>(bytes, sizeof kMagic + 4);
  if (header_length > bytes.size() - prefix - 4) fail_in(name, "header length exceeds the file size");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(bytes.substr(prefix, header_length));
  } catch (const nlohmann::json::exception& e) {
    fail_in(name, std::string("header is not valid JSON: ") + e.what());
  }
  std::size_t data_start = aligned(prefix + header_length);
  std::size_t data_size = bytes.size() - 4 >= data_start ? bytes.size() - 4 - data_start : 0;
  TensorFile file;
  try {
    file.meta = header.at("meta");
    for (const auto& entry : header.at("tensors")) {
      std::string tensor_name = entry.at("name").get<std::string>();
      auto dtype_it = dtype_names().find(entry.at("dtype").get<std::string>());
      if (dtype_it == dtype_names().end()) fail_in(name, "tensor '" + tensor_name + "' has an unknown dtype");
      const std::string what = "tensor '" + tensor_name + "'";
      const auto& dims = entry.at("shape");
      if (!dims.is_array() || dims.size() > 64) fail_in(name, what + " has no shape list of at most 64 dimensions");
      std::vector<int64_t> shape;
      for (const auto& dim : dims) {
        std::uint64_t value = header_size(dim, what + ": a dimension", name);
        if (value > static_cast<std::uint64_t>(INT64_MAX)) fail_in(name, what + " has an impossible dimension");
        shape.push_back(static_cast<int64_t>(value));
      }
      std::size_t offset = header_size(entry.at("offset"), what + ": offset", name);
      std::size_t nbytes = header_size(entry.at("nbytes"), what + ": nbytes", name);
      std::size_t element = torch::elementSize(dtype_it->second);
      // The element count, and apart from zeros (an empty tensor) the size LibTorch computes:
      // both must be representable.
      unsigned __int128 count = 1, nonzero = element;
      for (auto dim : shape) {
        if (dim != 0) nonzero *= static_cast<unsigned __int128>(dim);
        if (nonzero > static_cast<unsigned __int128>(INT64_MAX)) fail_in(name, what + " has an impossible shape");
        count *= static_cast<unsigned __int128>(dim);
      }
      if (count * element != nbytes || offset > data_size || nbytes > data_size - offset)
        fail_in(name, "tensor '" + tensor_name + "' does not fit its shape or the file");
      auto tensor = torch::empty(shape, torch::TensorOptions().dtype(dtype_it->second));
      if (nbytes) std::memcpy(tensor.data_ptr(), bytes.data() + data_start + offset, nbytes);
      if (!file.tensors.emplace(tensor_name, tensor).second) fail_in(name, "tensor '" + tensor_name + "' appears twice");
    }
  } catch (const nlohmann::json::exception& e) {
    fail_in(name, std::string("malformed header: ") + e.what());
  }
  return file;
}

void save_tensor_file(const std::string& path, const TensorFile& file) {
  write_file_atomic(path, serialize_tensor_file(file));
}

TensorFile load_tensor_file(const std::string& path) { return parse_tensor_file(read_text_file(path), path); }

std::map<std::string, torch::Tensor> tensors_with_prefix(const TensorFile& file, const std::string& prefix) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, tensor] : file.tensors)
    if (name.rfind(prefix, 0) == 0) out[name.substr(prefix.size())] = tensor;
  return out;
}

void add_with_prefix(TensorFile& file, const std::string& prefix, const std::map<std::string, torch::Tensor>& tensors) {
  for (const auto& [name, tensor] : tensors) file.tensors[prefix + name] = tensor;
}

}  // namespace cprfl
