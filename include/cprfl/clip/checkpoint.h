#pragma once
// OpenAI CLIP checkpoints: their tensors by name, and the architecture those names and
// shapes describe (as OpenAI's clip/model.py build_model infers it).
//
// Two formats are read, both without running anything from the file:
//  - a plain state dict saved with torch.save (zip), at the top level or under
//    "state_dict"/"model";
//  - an OpenAI TorchScript archive (RN50.pt, ViT-B-16.pt, ...): only its pickled module tree
//    is decoded (objects of `__torch__.*` classes reduced to their attribute dicts, see
//    io/torch_file.h); module attributes are flattened into dotted names
//    ("transformer.resblocks.0.attn.in_proj_weight"). Its code is never compiled or run.
#include <cstdint>
#include <string>
#include <vector>

#include "cprfl/io/state_dict.h"

namespace cprfl::clip {

// Every parameter and buffer by its dotted name, in file order; floating tensors as float32,
// others (the archives' int64 `input_resolution`, `context_length`, `vocab_size`) as stored.
// Errors (cprfl::Error naming the file): unreadable or malformed file, no tensors, a name
// that occurs twice, a root that is neither a state dict nor a module.
NamedTensors read_clip_checkpoint(const std::string& path);

// The text transformer.
struct ClipTextArchitecture {
  int64_t context_length = 0;  // positional_embedding rows (77)
  int64_t vocab_size = 0;      // token_embedding.weight rows (49408)
  int64_t width = 0;           // ln_final.weight size (512)
  int64_t layers = 0;          // transformer.resblocks.<i> count (12)
  int64_t heads = 0;           // width / 64 (8)
  int64_t embed_dim = 0;       // text_projection columns (RN50: 1024, ViT-B/16: 512)
};

enum class ClipVisualKind {
  None,              // a checkpoint without visual.* tensors (text encoder only)
  ModifiedResNet,    // RN50, RN101, RN50x4, ...
  VisionTransformer  // ViT-B/32, ViT-B/16, ViT-L/14, ...
};

// The image encoder; fields that do not apply to its kind are 0 / empty.
struct ClipVisualArchitecture {
  ClipVisualKind kind = ClipVisualKind::None;
  int64_t image_resolution = 0;  // input side in pixels (224, 288, ...)
  int64_t output_dim = 0;        // embedding width (= the text embed_dim in CLIP)
  int64_t width = 0;             // ResNet: layer1 width (stem 3x3 convs: width/2, width/2, width)
                                 // ViT: transformer width (768)
  int64_t heads = 0;             // ResNet: attention-pool heads, width*32/64; ViT: width/64
  // ModifiedResNet
  std::vector<int64_t> stage_blocks;  // Bottleneck blocks in layer1..layer4 ({3, 4, 6, 3} for RN50)
  // VisionTransformer
  int64_t layers = 0;      // visual.transformer.resblocks.<i> count
  int64_t patch_size = 0;  // visual.conv1 kernel = stride (16 for ViT-B/16)
};

struct ClipArchitecture {
  ClipTextArchitecture text;
  ClipVisualArchitecture visual;
};

// Reads the architecture from names and shapes. `prefix` is put before every name looked up
// (e.g. "text_encoder." for a checkpoint that nests CLIP's text side). A missing tensor, a
// tensor of the wrong rank, or inconsistent sizes are a cprfl::Error "<source>: ..." naming
// the tensor.
ClipTextArchitecture infer_clip_text_architecture(const NamedTensors& tensors, const std::string& prefix = "",
                                                  const std::string& source = "CLIP checkpoint");
// Text side as above plus the visual side: ViT when visual.proj / visual.class_embedding /
// visual.transformer.* exist, ModifiedResNet when visual.layer1.* / visual.attnpool.* exist,
// None when there is no visual.* tensor at all.
ClipArchitecture infer_clip_architecture(const NamedTensors& tensors, const std::string& source = "CLIP checkpoint");

}  // namespace cprfl::clip
