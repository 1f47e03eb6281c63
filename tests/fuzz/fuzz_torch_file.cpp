// torch.save zip files (io/torch_file.h) as whole files: the zip layer, record CRCs and
// everything behind them.
#include "cprfl/io/torch_file.h"
#include "fuzz_support.h"

namespace cprfl::fuzz {

void fuzz_one(std::string_view bytes) {
  const std::string& path = scratch_file(bytes, ".pth");
  TorchFileValue root = read_torch_file(path);
  if (root.is_dict()) read_torch_state_dict(path);
}

}  // namespace cprfl::fuzz
