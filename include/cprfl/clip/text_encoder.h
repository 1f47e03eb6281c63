#pragma once
// CLIP's text encoder (clip/model.py encode_text): token embedding + positional embedding →
// residual attention blocks with a causal mask → ln_final → the end token's position (the
// argmax of the token ids, as CLIP) → @ text_projection. Parameter names are OpenAI's, so a
// checkpoint's text tensors load by name; all sizes come from the tensors' shapes.
//
// Exact early stop: with a causal mask the output at the end token depends only on the
// positions up to it, so encode() runs only the first max(end)+1 positions — the same
// numbers as running all 77, several times fewer FLOPs.
#include <torch/torch.h>

#include <string>

#include "cprfl/clip/checkpoint.h"
#include "cprfl/clip/transformer.h"
#include "cprfl/io/state_dict.h"

namespace cprfl::clip {

class ClipTextEncoderImpl : public torch::nn::Module {
 public:
  // Random weights, initialised as CLIP does (tests, benchmarks); load_clip_text_encoder()
  // gives one with a checkpoint's weights.
  explicit ClipTextEncoderImpl(const ClipTextArchitecture& architecture);

  // tokens [N, T] integer ids as clip.tokenize gives them (T <= context length, zero padded,
  // the end token 49407 the largest id) → [N, embed_dim] on the module's device, not
  // normalised. Runs only the first max(end)+1 positions. Bad ids or shapes: cprfl::Error.
  torch::Tensor encode(const torch::Tensor& tokens);
  // The same through all T positions, as OpenAI's encode_text (for tests and benchmarks).
  torch::Tensor encode_all_positions(const torch::Tensor& tokens);

  const ClipTextArchitecture& architecture() const { return architecture_; }

  torch::nn::Embedding token_embedding{nullptr};
  torch::Tensor positional_embedding;  // [context, width]
  ClipTransformer transformer{nullptr};
  torch::nn::LayerNorm ln_final{nullptr};
  torch::Tensor text_projection;  // [width, embed_dim]

 private:
  torch::Tensor run(const torch::Tensor& tokens, bool early_stop);
  ClipTextArchitecture architecture_;
};
TORCH_MODULE(ClipTextEncoder);

// A text encoder holding a checkpoint's weights: the tensors under `prefix` with OpenAI's
// names (token_embedding.weight, positional_embedding, transformer.resblocks.*, ln_final.*,
// text_projection); all others (visual.*, logit_scale, ...) are ignored. A missing or
// unexpected text tensor or a wrong shape is a cprfl::Error "<source>: ..." naming it.
ClipTextEncoder load_clip_text_encoder(const NamedTensors& tensors, const std::string& source,
                                       const std::string& prefix = "");
// read_clip_checkpoint(path), then the above.
ClipTextEncoder load_clip_text_encoder(const std::string& checkpoint_path);

}  // namespace cprfl::clip
