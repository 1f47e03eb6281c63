#include "cprfl/clip/transformer.h"

#include <cmath>
#include <limits>

namespace cprfl::clip {

torch::Tensor quick_gelu(const torch::Tensor& x) { return x * torch::sigmoid(1.702 * x); }

torch::Tensor causal_mask(int64_t length, const torch::TensorOptions& options) {
  return torch::full({length, length}, -std::numeric_limits<float>::infinity(), options).triu(1);
}

ClipAttentionImpl::ClipAttentionImpl(int64_t width, int64_t heads_) : heads(heads_) {
  TORCH_CHECK(heads > 0 && width % heads == 0, "attention width ", width, " is not divisible by ", heads, " heads");
  in_proj_weight = register_parameter("in_proj_weight", torch::empty({3 * width, width}));
  in_proj_bias = register_parameter("in_proj_bias", torch::zeros({3 * width}));
  out_proj = register_module("out_proj", torch::nn::Linear(width, width));
  torch::nn::init::xavier_uniform_(in_proj_weight);  // as nn.MultiheadAttention
  torch::nn::init::zeros_(out_proj->bias);
}

torch::Tensor ClipAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  const int64_t batch = x.size(0);
  const int64_t length = x.size(1);
  const int64_t width = x.size(2);
  const int64_t head_dim = width / heads;
  // [N, L, 3w] → q, k, v each [N, heads, L, head_dim]
  auto qkv = torch::nn::functional::linear(x, in_proj_weight, in_proj_bias)
                 .view({batch, length, 3, heads, head_dim})
                 .permute({2, 0, 3, 1, 4});
  auto q = qkv[0] * (1.0 / std::sqrt(static_cast<double>(head_dim)));
  auto scores = torch::matmul(q, qkv[1].transpose(-2, -1));  // [N, heads, L, L]
  if (mask.defined()) scores = scores + mask;
  auto context = torch::matmul(torch::softmax(scores, -1), qkv[2]);  // [N, heads, L, head_dim]
  return out_proj(context.transpose(1, 2).reshape({batch, length, width}));
}

ClipMlpImpl::ClipMlpImpl(int64_t width) {
  c_fc = register_module("c_fc", torch::nn::Linear(width, 4 * width));
  c_proj = register_module("c_proj", torch::nn::Linear(4 * width, width));
}

torch::Tensor ClipMlpImpl::forward(const torch::Tensor& x) { return c_proj(quick_gelu(c_fc(x))); }

ClipResidualBlockImpl::ClipResidualBlockImpl(int64_t width, int64_t heads) {
  // OpenAI's registration order: attn, ln_1, mlp, ln_2.
  attn = register_module("attn", ClipAttention(width, heads));
  ln_1 = register_module("ln_1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}).eps(1e-5)));
  mlp = register_module("mlp", ClipMlp(width));
  ln_2 = register_module("ln_2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({width}).eps(1e-5)));
}

torch::Tensor ClipResidualBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  auto y = x + attn(ln_1(x), mask);
  return y + mlp(ln_2(y));
}

ClipTransformerImpl::ClipTransformerImpl(int64_t width_, int64_t layers_, int64_t heads_)
    : width(width_), layers(layers_), heads(heads_) {
  resblocks = register_module("resblocks", torch::nn::ModuleList());
  for (int64_t i = 0; i < layers; ++i) resblocks->push_back(ClipResidualBlock(width, heads));
}

torch::Tensor ClipTransformerImpl::forward(const torch::Tensor& x, const torch::Tensor& mask) {
  auto y = x;
  for (int64_t i = 0; i < layers; ++i) y = block(i)->forward(y, mask);
  return y;
}

ClipResidualBlock ClipTransformerImpl::block(int64_t index) const {
  return ClipResidualBlock(resblocks->ptr<ClipResidualBlockImpl>(static_cast<std::size_t>(index)));
}

void init_clip_transformer(ClipTransformerImpl& transformer) {
  torch::NoGradGuard no_grad;
  const double width = static_cast<double>(transformer.width);
  const double attention_std = std::pow(width, -0.5);
  const double projection_std = attention_std * std::pow(2.0 * static_cast<double>(transformer.layers), -0.5);
  const double fc_std = std::pow(2.0 * width, -0.5);
  for (int64_t i = 0; i < transformer.layers; ++i) {
    auto block = transformer.block(i);
    block->attn->in_proj_weight.normal_(0.0, attention_std);
    block->attn->out_proj->weight.normal_(0.0, projection_std);
    block->mlp->c_fc->weight.normal_(0.0, fc_std);
    block->mlp->c_proj->weight.normal_(0.0, projection_std);
  }
}

}  // namespace cprfl::clip
