// OpenAI CLIP checkpoints (clip/checkpoint.h): TorchScript archives and state dicts read for
// their tensors, then the architecture read from names and shapes, then the text encoder
// built and loaded from them (its sizes all come from tensors in the file, so bounded by it).
#include "cprfl/clip/checkpoint.h"
#include "cprfl/clip/text_encoder.h"
#include "fuzz_support.h"

namespace cprfl::fuzz {

void fuzz_one(std::string_view bytes) {
  const std::string& path = scratch_file(bytes, ".pt");
  NamedTensors tensors = clip::read_clip_checkpoint(path);
  clip::infer_clip_architecture(tensors, path);
  clip::load_clip_text_encoder(tensors, path);
}

}  // namespace cprfl::fuzz
