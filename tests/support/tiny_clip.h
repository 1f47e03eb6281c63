#pragma once
// Tiny CLIP-shaped checkpoints for the CLIP tests: random tensors with OpenAI's names and
// shapes, saved as a torch.save state dict or as a real TorchScript archive written by
// LibTorch (a module tree with parameters, buffers and submodules, some tensors float16).
#include <string>

#include "cprfl/clip/checkpoint.h"
#include "cprfl/io/state_dict.h"

namespace cprfl::testing {

struct TinyClipShape {
  int64_t text_width = 64;  // heads = width / 64
  int64_t text_layers = 2;
  int64_t context_length = 16;
  int64_t vocab_size = 100;
  int64_t embed_dim = 32;
  clip::ClipVisualKind visual = clip::ClipVisualKind::ModifiedResNet;
};

// Text side: token_embedding.weight, positional_embedding, transformer.resblocks.<i>.*,
// ln_final.*, text_projection, logit_scale. ModifiedResNet visual side: stem convs and
// BatchNorms, layer1 with 2 blocks and layer2..4 with 1 (a few tensors each), attnpool
// (width 8: embed 256, 4 heads, resolution 64). ViT visual side: width 64, patch 8,
// resolution 32, 2 blocks, output 32.
NamedTensors tiny_clip_tensors(const TinyClipShape& shape = {}, uint64_t seed = 0);

// torch.save(state_dict) (tests/support/torch_file_writer).
void save_clip_state_dict(const std::string& path, const NamedTensors& tensors);

// torch::jit::Module("__torch__.model.CLIP") with one submodule per dotted prefix, each
// tensor registered as a parameter (floating) or buffer (others), plus OpenAI's int64
// `input_resolution`/`context_length`/`vocab_size` buffers and non-tensor attributes.
// With half_weights, floating tensors of 2 or more dimensions are stored as float16 (as in
// OpenAI's archives). Saved with Module::save.
void save_clip_torchscript(const std::string& path, const NamedTensors& tensors, bool half_weights = true);

}  // namespace cprfl::testing
