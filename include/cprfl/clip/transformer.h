#pragma once
// CLIP's transformer (clip/model.py Transformer / ResidualAttentionBlock) with OpenAI's
// parameter names, so that a checkpoint's tensors load by name: the text encoder uses it with
// a causal mask, the vision transformer without one. Activations are batch-first [N, L, width].
#include <torch/torch.h>

#include <cstdint>

namespace cprfl::clip {

// x * sigmoid(1.702 x), CLIP's GELU approximation.
torch::Tensor quick_gelu(const torch::Tensor& x);

// [length, length] float mask added to attention scores: 0 on and below the diagonal, -inf above.
torch::Tensor causal_mask(int64_t length, const torch::TensorOptions& options = {});

// Multi-head self-attention with torch.nn.MultiheadAttention's parameters:
// in_proj_weight [3w, w], in_proj_bias [3w] (q, k, v stacked), out_proj (Linear w → w).
class ClipAttentionImpl : public torch::nn::Module {
 public:
  ClipAttentionImpl(int64_t width, int64_t heads);
  // x [N, L, w]; `mask` [L, L] is added to the scores (undefined: no mask).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask = {});

  torch::Tensor in_proj_weight;
  torch::Tensor in_proj_bias;
  torch::nn::Linear out_proj{nullptr};
  int64_t heads;
};
TORCH_MODULE(ClipAttention);

// c_proj(quick_gelu(c_fc(x))), c_fc: w → 4w.
class ClipMlpImpl : public torch::nn::Module {
 public:
  explicit ClipMlpImpl(int64_t width);
  torch::Tensor forward(const torch::Tensor& x);

  torch::nn::Linear c_fc{nullptr};
  torch::nn::Linear c_proj{nullptr};
};
TORCH_MODULE(ClipMlp);

// x + attn(ln_1(x)), then x + mlp(ln_2(x)).
class ClipResidualBlockImpl : public torch::nn::Module {
 public:
  ClipResidualBlockImpl(int64_t width, int64_t heads);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask = {});

  ClipAttention attn{nullptr};
  torch::nn::LayerNorm ln_1{nullptr};
  ClipMlp mlp{nullptr};
  torch::nn::LayerNorm ln_2{nullptr};
};
TORCH_MODULE(ClipResidualBlock);

// `layers` residual blocks, registered as resblocks.<i> (names "resblocks.0.attn.in_proj_weight").
class ClipTransformerImpl : public torch::nn::Module {
 public:
  ClipTransformerImpl(int64_t width, int64_t layers, int64_t heads);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& mask = {});
  ClipResidualBlock block(int64_t index) const;

  torch::nn::ModuleList resblocks{nullptr};
  int64_t width;
  int64_t layers;
  int64_t heads;
};
TORCH_MODULE(ClipTransformer);

// CLIP's initialisation of a transformer's weights (clip/model.py initialize_parameters):
// attention in N(0, w^-1/2), output projections N(0, w^-1/2 (2 layers)^-1/2), c_fc N(0, (2w)^-1/2).
void init_clip_transformer(ClipTransformerImpl& transformer);

}  // namespace cprfl::clip
