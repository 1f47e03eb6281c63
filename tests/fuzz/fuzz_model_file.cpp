// .cprfl model files and checkpoints (io/tensor_file.h, config/model_file.h): the container,
// then rebuilding the model it describes. The trailing CRC-32 is recomputed first, so that
// mutations reach the parser instead of all stopping at the checksum (which is unit-tested).
#include <zlib.h>

#include <cstring>

#include "cprfl/config/model_file.h"
#include "cprfl/io/tensor_file.h"
#include "fuzz_support.h"

namespace cprfl::fuzz {

void fuzz_one(std::string_view bytes) {
  std::string data(bytes);
  if (data.size() >= 4) {
    auto crc = static_cast<std::uint32_t>(crc32(0L, reinterpret_cast<const Bytef*>(data.data()), static_cast<uInt>(data.size() - 4)));
    std::memcpy(data.data() + data.size() - 4, &crc, 4);
  }
  TensorFile file = parse_tensor_file(data, "fuzz.cprfl");
  model_from_tensor_file(file, "fuzz.cprfl", /*prefer_ema=*/true);
}

}  // namespace cprfl::fuzz
