#pragma once
// The records of a zip archive as torch.save writes it ("archive/data.pkl", "archive/data/0",
// ...), read by their names without the archive folder ("data.pkl", "data/0").
//
// The records themselves (stored or deflated) are read by LibTorch's own zip reader. What
// this class adds is a check of every record against the CRC-32 that the zip's central
// directory holds for it: LibTorch's reader does not check them, so a flipped bit in the
// tensor data would otherwise pass silently. The central directory (zip64 included) is read
// and bounds-checked here first, because LibTorch's reader leaks its zip state when it refuses
// a malformed archive; it is only opened on a plausible one.
//
// Errors are cprfl::Error naming the file. LibTorch's reader may also throw c10::Error (and
// std::bad_alloc for absurd record sizes); read_torch_file turns those into cprfl::Error.
#include <torch/types.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>

namespace caffe2::serialize {
class PyTorchStreamReader;
}

namespace cprfl {

class ZipArchive {
 public:
  // Reads the central directory of the zip file `path`, then opens it with LibTorch's reader.
  explicit ZipArchive(const std::string& path);
  ~ZipArchive();
  ZipArchive(const ZipArchive&) = delete;
  ZipArchive& operator=(const ZipArchive&) = delete;

  bool has(const std::string& name);
  // The bytes of record `name` and their count, after its CRC-32 check.
  std::tuple<at::DataPtr, std::size_t> get(const std::string& name);

 private:
  std::string path_;
  std::map<std::string, uint32_t> checksums_;  // CRC-32 by record name ("data/0")
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader_;
};

}  // namespace cprfl
