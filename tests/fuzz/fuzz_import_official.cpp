// The authors' checkpoints (config/import_official.h): the state dict behind "module."
// prefixes and a {"state_dict": ...} wrapper, the architecture read from its key names and
// shapes, and their CLIP text encoder built from the text_encoder.* tensors. (Building the
// ResNet backbone itself is left out: it is torchvision-sized whatever the file says, and
// the weight loading after it is unit-tested.)
#include "cprfl/clip/text_encoder.h"
#include "cprfl/config/import_official.h"
#include "fuzz_support.h"

namespace cprfl::fuzz {

void fuzz_one(std::string_view bytes) {
  const std::string& path = scratch_file(bytes, ".pth");
  NamedTensors state = read_official_state(path);
  infer_official_architecture(state, /*heads=*/2, path);
  clip::load_clip_text_encoder(state, path, "text_encoder.");
}

}  // namespace cprfl::fuzz
