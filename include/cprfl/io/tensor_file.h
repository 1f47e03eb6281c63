#pragma once
// The project's own container for model files and training checkpoints: a JSON header
// (metadata + a table of named tensors) followed by the raw tensor bytes and a CRC-32 of
// everything before it. Loading never executes anything from the file, checks every
// offset and size against the file's length before allocating, and verifies the checksum,
// so a truncated or corrupted file is an error naming the file, never garbage.
//
// Layout: "CPRFLTF\0" | u32 version | u64 header length | header JSON | padding to 64 |
//         tensor bytes (each 64-byte aligned) | u32 CRC-32 (all little-endian).
#include <torch/torch.h>

#include <map>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace cprfl {

struct TensorFile {
  nlohmann::json meta = nlohmann::json::object();  // free-form metadata (config, class names, …)
  std::map<std::string, torch::Tensor> tensors;    // CPU tensors; float16/32/64, int8/32/64, uint8, bool
};

std::string serialize_tensor_file(const TensorFile& file);
TensorFile parse_tensor_file(std::string_view bytes, const std::string& name_for_errors);

// Atomic write (temporary file + rename) and checked read.
void save_tensor_file(const std::string& path, const TensorFile& file);
TensorFile load_tensor_file(const std::string& path);

// Tensors whose name starts with `prefix`, with the prefix removed.
std::map<std::string, torch::Tensor> tensors_with_prefix(const TensorFile& file, const std::string& prefix);
void add_with_prefix(TensorFile& file, const std::string& prefix, const std::map<std::string, torch::Tensor>& tensors);

}  // namespace cprfl
