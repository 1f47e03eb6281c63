// NumPy .npy files (io/npy.h). A file that loads must encode and load back to the same bytes.
#include <cstring>

#include "cprfl/io/npy.h"
#include "fuzz_support.h"

namespace cprfl::fuzz {

void fuzz_one(std::string_view bytes) {
  torch::Tensor tensor = parse_npy(bytes, "fuzz.npy");
  if (!tensor.is_contiguous()) invariant_failed("parse_npy returned a non-contiguous tensor");
  torch::Tensor back = parse_npy(encode_npy(tensor, "fuzz.npy"), "re-encoded.npy");
  std::size_t nbytes = static_cast<std::size_t>(tensor.numel()) * tensor.element_size();
  if (back.scalar_type() != tensor.scalar_type() || back.sizes() != tensor.sizes() ||
      (nbytes && std::memcmp(back.data_ptr(), tensor.data_ptr(), nbytes) != 0))
    invariant_failed("the .npy round trip changed the array");
}

}  // namespace cprfl::fuzz
