#pragma once
// OpenAI CLIP's image towers as CPRFL trunks (docs/METHOD.md §1), with OpenAI's module layout, so
// the `visual.*` tensors of a CLIP checkpoint load 1:1 (names here are relative to `visual.`).
//  - ModifiedResNet (RN50, RN101, RN50x4, RN50x16, RN50x64): three-conv stem + avgpool,
//    anti-aliased Bottlenecks (stride done by an average pool, never a strided conv), and an
//    attention pool. As a trunk, the visual tokens are the feature map BEFORE the attention
//    pool: d0 = width * 32, stride 32. The attention pool is kept (and loaded) for encode_image.
//  - VisionTransformer (ViT-B/32, B/16, L/14): patch conv, class token, positional embedding,
//    ln_pre, then CLIP's transformer (clip::ClipTransformer, the text encoder's, here with no
//    attention mask): pre-LN residual attention blocks with QuickGELU. As a trunk, the visual
//    tokens are the patch tokens after the last block (class token dropped, no ln_post /
//    proj), returned as a map [B, width, H/patch, W/patch] so the CPRFL head flattens it like
//    a CNN map; d0 = width, stride = patch size.
// Input sizes other than the checkpoint's resolution are accepted: the grid part of a
// positional embedding (ViT tokens, attention pool) is bicubic-interpolated to the input's
// grid (align_corners = false); the class-token row is kept as is.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/linear.h>
#include <torch/nn/modules/normalization.h>
#include <torch/nn/modules/pooling.h>

#include "cprfl/clip/transformer.h"
#include "cprfl/io/state_dict.h"
#include "cprfl/model/resnet.h"

namespace cprfl {

// A CLIP image tower: a CPRFL trunk that can also compute CLIP's image embedding.
class ClipVisualBackbone : public Backbone {
 public:
  // CLIP's image embedding [B, output_dim] (attention pool, or ln_post(class token) @ proj).
  virtual torch::Tensor encode_image(const torch::Tensor& images) = 0;
  virtual int64_t output_dim() const = 0;
  virtual int64_t input_resolution() const = 0;  // the resolution the checkpoint was trained at
  virtual bool is_vision_transformer() const = 0;
};

// ---- ModifiedResNet -----------------------------------------------------------------------

struct ClipResNetOptions {
  std::vector<int64_t> layers{3, 4, 6, 3};  // Bottlenecks per stage (exactly 4 stages)
  int64_t width = 64;                       // stem width; d0 = width * 32
  int64_t heads = 32;                       // attention-pool heads (OpenAI: width * 32 / 64)
  int64_t output_dim = 1024;                // CLIP embedding width
  int64_t input_resolution = 224;           // attention-pool grid = input_resolution / 32
};

// The downsample branch: AvgPool(stride) -> 1x1 conv -> BN, with OpenAI's child names "-1"
// (the pool, no tensors), "0" (conv) and "1" (BN), so the keys are downsample.0.weight and
// downsample.1.{weight,bias,running_mean,running_var,num_batches_tracked}.
class ClipDownsampleImpl : public torch::nn::Module {
 public:
  ClipDownsampleImpl(int64_t in_channels, int64_t out_channels, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);
  void fold_batchnorm();  // see Backbone::fold_batchnorm

 private:
  bool folded_ = false;
  torch::nn::AvgPool2d pool{nullptr};
  torch::nn::Conv2d conv{nullptr};
  torch::nn::BatchNorm2d bn{nullptr};
  int64_t stride_;  // 1: the pool is the identity and is skipped
};
TORCH_MODULE(ClipDownsample);

// conv1 (1x1) -> bn1 -> relu -> conv2 (3x3, stride 1) -> bn2 -> relu -> avgpool(stride) ->
// conv3 (1x1) -> bn3, plus the shortcut, then relu. Output channels planes * 4.
class ClipBottleneckImpl : public torch::nn::Module {
 public:
  static constexpr int64_t kExpansion = 4;
  ClipBottleneckImpl(int64_t in_channels, int64_t planes, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);
  void fold_batchnorm();  // see Backbone::fold_batchnorm

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  ClipDownsample downsample{nullptr};  // null when the shape is kept

 private:
  int64_t stride_;
  bool folded_ = false;
};
TORCH_MODULE(ClipBottleneck);

// QKV attention of the mean token over [mean; all positions] (+ positional embedding), as
// OpenAI's AttentionPool2d. Names: positional_embedding, {k,q,v,c}_proj.{weight,bias}.
class ClipAttentionPoolImpl : public torch::nn::Module {
 public:
  ClipAttentionPoolImpl(int64_t grid, int64_t embed_dim, int64_t heads, int64_t output_dim);
  torch::Tensor forward(const torch::Tensor& feature_map);  // [B, C, h, w] -> [B, output_dim]

  torch::Tensor positional_embedding;  // [grid^2 + 1, C]
  torch::nn::Linear k_proj{nullptr}, q_proj{nullptr}, v_proj{nullptr}, c_proj{nullptr};

 private:
  int64_t heads_;
};
TORCH_MODULE(ClipAttentionPool);

class ClipModifiedResNetImpl : public ClipVisualBackbone {
 public:
  explicit ClipModifiedResNetImpl(const ClipResNetOptions& options = {});
  torch::Tensor forward(const torch::Tensor& images) override;  // [B, width*32, H/32, W/32]
  torch::Tensor encode_image(const torch::Tensor& images) override;
  int64_t out_channels() const override { return options_.width * 32; }
  int64_t stride() const override { return 32; }
  int64_t output_dim() const override { return options_.output_dim; }
  int64_t input_resolution() const override { return options_.input_resolution; }
  bool is_vision_transformer() const override { return false; }
  void fold_batchnorm() override;
  const ClipResNetOptions& options() const { return options_; }

  ClipAttentionPool attnpool{nullptr};

 private:
  ClipResNetOptions options_;
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  std::vector<torch::nn::Sequential> layers_;
};
TORCH_MODULE(ClipModifiedResNet);

// ---- VisionTransformer --------------------------------------------------------------------

struct ClipViTOptions {
  int64_t patch_size = 32;
  int64_t width = 768;
  int64_t layers = 12;
  int64_t heads = 12;  // OpenAI: width / 64
  int64_t output_dim = 512;
  int64_t input_resolution = 224;  // token grid = input_resolution / patch_size
};

class ClipVisionTransformerImpl : public ClipVisualBackbone {
 public:
  explicit ClipVisionTransformerImpl(const ClipViTOptions& options = {});
  torch::Tensor forward(const torch::Tensor& images) override;  // [B, width, H/patch, W/patch]
  torch::Tensor encode_image(const torch::Tensor& images) override;
  // All tokens after the last block, class token first: [B, 1 + h*w, width].
  torch::Tensor tokens(const torch::Tensor& images);
  int64_t out_channels() const override { return options_.width; }
  int64_t stride() const override { return options_.patch_size; }
  int64_t output_dim() const override { return options_.output_dim; }
  int64_t input_resolution() const override { return options_.input_resolution; }
  bool is_vision_transformer() const override { return true; }
  const ClipViTOptions& options() const { return options_; }

  torch::Tensor class_embedding, positional_embedding, proj;

 private:
  ClipViTOptions options_;
  torch::nn::Conv2d conv1{nullptr};
  torch::nn::LayerNorm ln_pre{nullptr};
  clip::ClipTransformer transformer_{nullptr};  // registered as transformer, used without a mask
  torch::nn::LayerNorm ln_post{nullptr};
};
TORCH_MODULE(ClipVisionTransformer);

// ---- Shared pieces ------------------------------------------------------------------------

// A positional embedding [1 + g*g, C] (class / mean row first, then a square g x g grid in
// row-major order) resampled to an h x w grid: the grid part is bicubic-interpolated
// (align_corners = false), the first row is kept. Returned unchanged when h = w = g.
torch::Tensor resize_positional_embedding(const torch::Tensor& embedding, int64_t h, int64_t w);

// ---- OpenAI's models by name --------------------------------------------------------------

struct ClipVisualSpec {
  std::string name;     // "clip_rn50", ...
  std::string openai;   // OpenAI's name: "RN50", "ViT-B/16", ...
  bool vit = false;
  ClipResNetOptions resnet;  // when !vit
  ClipViTOptions vit_options;  // when vit
};

// clip_rn50, clip_rn101, clip_rn50x4, clip_rn50x16, clip_rn50x64, clip_vit_b32, clip_vit_b16,
// clip_vit_l14, clip_vit_l14_336 — dims as OpenAI's build_model derives them.
const std::vector<ClipVisualSpec>& clip_visual_specs();
bool is_clip_visual_name(const std::string& name);
// The spec of `name`, or a cprfl::Error listing the valid names.
const ClipVisualSpec& clip_visual_spec(const std::string& name);
std::shared_ptr<ClipVisualBackbone> make_clip_visual(const ClipVisualSpec& spec);

// Loads the `visual.*` entries of a CLIP state dict into a CLIP tower (other entries, e.g.
// the text side, are ignored; half precision becomes float32). Strict: a missing, unexpected
// or mis-shaped `visual.` key, a state with no `visual.` keys, a ViT state for a ResNet tower
// (or the reverse) or a backbone that is not a CLIP tower is a cprfl::Error naming `source`
// and the key; nothing is copied then.
void load_clip_visual_weights(Backbone& backbone, const NamedTensors& all, const std::string& source);

}  // namespace cprfl
