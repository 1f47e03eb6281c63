#pragma once
// NumPy .npy files <-> CPU tensors.
//
// Supported element types (descr -> tensor dtype):
//   '<f2' kHalf, '<f4' kFloat, '<f8' kDouble, '<i4' kInt, '<i8' kLong, '|u1' kByte, '|b1' kBool.
// Big-endian files ('>f4' …) are read and byte-swapped; files are always written little-endian.
// Only C order; format versions 1.0, 2.0 and 3.0 are read. Written files use version 1.0
// (2.0 only if the header would not fit in 64 KiB) with the header padded, as numpy does,
// so that the data starts at a multiple of 64 bytes.
//
// Every problem — bad magic, truncated or malformed header, unsupported dtype, Fortran
// order, a shape that does not match the data length, bool bytes other than 0/1 — is a
// cprfl::Error whose message starts with the file name. The shape is checked against the
// file size before anything is allocated, so a corrupt header cannot ask for 10^12 elements.
#include <string>
#include <string_view>

#include <torch/types.h>

namespace cprfl {

// Reads a whole .npy file into a new contiguous CPU tensor.
torch::Tensor read_npy(const std::string& path);

// Decodes .npy bytes already in memory (tests, fuzzing); `name_for_errors` starts messages.
torch::Tensor parse_npy(std::string_view bytes, const std::string& name_for_errors);

// Encodes a tensor (any device, any layout: it is copied to contiguous CPU memory) as .npy
// bytes. Its dtype must be one of the supported ones; `name_for_errors` starts messages.
std::string encode_npy(const torch::Tensor& tensor, const std::string& name_for_errors = "npy");

// Writes a tensor as a .npy file, atomically (see atomic_file.h).
void write_npy(const std::string& path, const torch::Tensor& tensor);

}  // namespace cprfl
