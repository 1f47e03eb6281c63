// The restricted unpickler of io/torch_file.h: the input is a data.pkl, stored in a valid
// torch.save zip beside storage records data/0 … data/7 (1 KiB each), so that mutations
// reach the unpickler instead of failing the zip CRC checks (fuzz_torch_file covers those).
#include "cprfl/io/torch_file.h"
#include "fuzz_support.h"
#include "torch_file_writer.h"

namespace cprfl::fuzz {

void fuzz_one(std::string_view bytes) {
  static const std::vector<std::pair<std::string, std::string>> storages = [] {
    std::vector<std::pair<std::string, std::string>> records;
    for (int i = 0; i < 8; ++i) {
      std::string data(1024, '\0');
      for (std::size_t j = 0; j < data.size(); ++j) data[j] = static_cast<char>(j * 7 + i);
      records.emplace_back(std::to_string(i), data);
    }
    return records;
  }();
  const std::string& path = scratch_file("", ".pth");
  cprfl::testing::write_torch_zip(path, std::string(bytes), storages);
  TorchFileValue root = read_torch_file(path);
  if (root.is_dict()) read_torch_state_dict(path);
}

}  // namespace cprfl::fuzz
