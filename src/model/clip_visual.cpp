#include "cprfl/model/clip_visual.h"

#include <cmath>
#include <optional>

#include "cprfl/common/error.h"

namespace cprfl {

namespace nn = torch::nn;
namespace F = torch::nn::functional;

namespace {

nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t padding = 0) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, kernel).padding(padding).bias(false));
}

// Scaled dot-product attention with `heads` heads on already projected q [B, Lq, C],
// k and v [B, Lk, C] -> [B, Lq, C] (what nn.MultiheadAttention does between its projections).
torch::Tensor multi_head_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                   int64_t heads) {
  const int64_t batch = q.size(0), width = q.size(2), head_dim = width / heads;
  auto split_heads = [&](const torch::Tensor& t) {
    return t.reshape({batch, t.size(1), heads, head_dim}).transpose(1, 2);
  };
  auto scores = torch::matmul(split_heads(q) * (1.0 / std::sqrt(double(head_dim))), split_heads(k).transpose(-2, -1));
  auto out = torch::matmul(torch::softmax(scores, -1), split_heads(v));
  return out.transpose(1, 2).reshape({batch, q.size(1), width});
}

void check_heads(int64_t width, int64_t heads, const std::string& what) {
  if (heads < 1 || width % heads != 0)
    fail_in("backbone", what + ": " + std::to_string(heads) + " heads do not divide the width " + std::to_string(width));
}

void check_input(const torch::Tensor& images, int64_t stride, const std::string& what) {
  if (images.dim() != 4 || images.size(1) != 3)
    fail_in("backbone", what + " expects images [B, 3, H, W], got " + shape_string(images));
  if (images.size(2) < stride || images.size(3) < stride)
    fail_in("backbone", what + " needs images of at least " + std::to_string(stride) + "x" + std::to_string(stride) +
                            " pixels, got " + std::to_string(images.size(2)) + "x" + std::to_string(images.size(3)));
}

}  // namespace

torch::Tensor resize_positional_embedding(const torch::Tensor& embedding, int64_t h, int64_t w) {
  const int64_t cells = embedding.size(0) - 1, width = embedding.size(1);
  const auto grid = static_cast<int64_t>(std::llround(std::sqrt(double(std::max<int64_t>(cells, 0)))));
  if (cells < 1 || grid * grid != cells)
    fail_in("backbone", "a positional embedding of " + std::to_string(embedding.size(0)) +
                            " rows is not 1 + a square grid");
  if (h == grid && w == grid) return embedding;
  auto map = embedding.slice(0, 1).reshape({1, grid, grid, width}).permute({0, 3, 1, 2});
  map = F::interpolate(map, F::InterpolateFuncOptions()
                                .size(std::vector<int64_t>{h, w})
                                .mode(torch::kBicubic)
                                .align_corners(false));
  return torch::cat({embedding.slice(0, 0, 1), map.permute({0, 2, 3, 1}).reshape({h * w, width})}, 0);
}

// ---- ModifiedResNet -----------------------------------------------------------------------

namespace {

// A BatchNorm that fold_batchnorm() has taken into the convolution before it is skipped.
torch::Tensor unless_folded(bool folded, nn::BatchNorm2d& bn, const torch::Tensor& y) { return folded ? y : bn(y); }

}  // namespace

ClipDownsampleImpl::ClipDownsampleImpl(int64_t in_channels, int64_t out_channels, int64_t stride) : stride_(stride) {
  pool = register_module("-1", nn::AvgPool2d(nn::AvgPool2dOptions(stride)));
  conv = register_module("0", cprfl::conv(in_channels, out_channels, 1));
  bn = register_module("1", nn::BatchNorm2d(out_channels));
}

torch::Tensor ClipDownsampleImpl::forward(const torch::Tensor& x) {
  auto y = conv(stride_ > 1 ? pool(x) : x);
  return unless_folded(folded_, bn, y);
}

void ClipDownsampleImpl::fold_batchnorm() {
  fold_into(conv, bn);
  folded_ = true;
}

ClipBottleneckImpl::ClipBottleneckImpl(int64_t in_channels, int64_t planes, int64_t stride) : stride_(stride) {
  conv1 = register_module("conv1", conv(in_channels, planes, 1));
  bn1 = register_module("bn1", nn::BatchNorm2d(planes));
  conv2 = register_module("conv2", conv(planes, planes, 3, 1));
  bn2 = register_module("bn2", nn::BatchNorm2d(planes));
  conv3 = register_module("conv3", conv(planes, planes * kExpansion, 1));
  bn3 = register_module("bn3", nn::BatchNorm2d(planes * kExpansion));
  if (stride > 1 || in_channels != planes * kExpansion)
    downsample = register_module("downsample", ClipDownsample(in_channels, planes * kExpansion, stride));
  // CLIP starts each residual branch at zero (bn3 scale 0), so a fresh block is the identity path.
  torch::NoGradGuard no_grad;
  bn3->weight.zero_();
}

torch::Tensor ClipBottleneckImpl::forward(const torch::Tensor& x) {
  auto out = torch::relu(unless_folded(folded_, bn1, conv1(x)));
  out = torch::relu(unless_folded(folded_, bn2, conv2(out)));
  // Anti-aliasing: the stride is an average pool after the 3x3 conv, not a strided conv.
  if (stride_ > 1) out = F::avg_pool2d(out, F::AvgPool2dFuncOptions(stride_));
  out = unless_folded(folded_, bn3, conv3(out));
  out = out + (downsample ? downsample(x) : x);
  return torch::relu(out);
}

void ClipBottleneckImpl::fold_batchnorm() {
  fold_into(conv1, bn1);
  fold_into(conv2, bn2);
  fold_into(conv3, bn3);
  if (downsample) downsample->fold_batchnorm();
  folded_ = true;
}

ClipAttentionPoolImpl::ClipAttentionPoolImpl(int64_t grid, int64_t embed_dim, int64_t heads, int64_t output_dim)
    : heads_(heads) {
  check_heads(embed_dim, heads, "CLIP attention pool");
  if (grid < 1) fail_in("backbone", "CLIP attention pool: the input resolution must be at least 32 pixels");
  positional_embedding =
      register_parameter("positional_embedding", torch::randn({grid * grid + 1, embed_dim}) / std::sqrt(double(embed_dim)));
  k_proj = register_module("k_proj", nn::Linear(embed_dim, embed_dim));
  q_proj = register_module("q_proj", nn::Linear(embed_dim, embed_dim));
  v_proj = register_module("v_proj", nn::Linear(embed_dim, embed_dim));
  c_proj = register_module("c_proj", nn::Linear(embed_dim, output_dim));
  torch::NoGradGuard no_grad;
  for (auto* projection : {&k_proj, &q_proj, &v_proj, &c_proj})
    nn::init::normal_((*projection)->weight, 0.0, 1.0 / std::sqrt(double(embed_dim)));
}

torch::Tensor ClipAttentionPoolImpl::forward(const torch::Tensor& feature_map) {
  const int64_t h = feature_map.size(2), w = feature_map.size(3);
  auto x = feature_map.flatten(2).transpose(1, 2);  // [B, hw, C]
  x = torch::cat({x.mean(1, /*keepdim=*/true), x}, 1);
  x = x + resize_positional_embedding(positional_embedding, h, w).to(x.scalar_type()).unsqueeze(0);
  // Only the mean token queries; every token (itself included) is a key and a value.
  auto pooled = multi_head_attention(q_proj(x.slice(1, 0, 1)), k_proj(x), v_proj(x), heads_);
  return c_proj(pooled).squeeze(1);
}

ClipModifiedResNetImpl::ClipModifiedResNetImpl(const ClipResNetOptions& options) : options_(options) {
  const int64_t width = options_.width;
  if (options_.layers.size() != 4)
    fail_in("backbone", "CLIP ModifiedResNet needs 4 stages, got " + std::to_string(options_.layers.size()));
  for (auto count : options_.layers)
    if (count < 1) fail_in("backbone", "CLIP ModifiedResNet: every stage needs at least one block");
  if (width < 2 || width % 2 != 0) fail_in("backbone", "CLIP ModifiedResNet: the width must be even and >= 2");
  // The three-conv stem (the first at stride 2), then an average pool.
  conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(3, width / 2, 3).stride(2).padding(1).bias(false)));
  bn1 = register_module("bn1", nn::BatchNorm2d(width / 2));
  conv2 = register_module("conv2", conv(width / 2, width / 2, 3, 1));
  bn2 = register_module("bn2", nn::BatchNorm2d(width / 2));
  conv3 = register_module("conv3", conv(width / 2, width, 3, 1));
  bn3 = register_module("bn3", nn::BatchNorm2d(width));
  int64_t channels = width;
  for (std::size_t stage = 0; stage < 4; ++stage) {
    const int64_t planes = width << stage;
    nn::Sequential blocks;
    for (int64_t i = 0; i < options_.layers[stage]; ++i) {
      blocks->push_back(ClipBottleneck(channels, planes, i == 0 && stage > 0 ? 2 : 1));
      channels = planes * ClipBottleneckImpl::kExpansion;
    }
    layers_.push_back(register_module("layer" + std::to_string(stage + 1), blocks));
  }
  attnpool = register_module("attnpool", ClipAttentionPool(options_.input_resolution / 32, out_channels(),
                                                           options_.heads, options_.output_dim));
}

torch::Tensor ClipModifiedResNetImpl::forward(const torch::Tensor& images) {
  check_input(images, 32, "CLIP ModifiedResNet");
  refuse_training_if_folded(folded_, is_training());
  auto x = torch::relu(unless_folded(folded_, bn1, conv1(images)));
  x = torch::relu(unless_folded(folded_, bn2, conv2(x)));
  x = torch::relu(unless_folded(folded_, bn3, conv3(x)));
  x = F::avg_pool2d(x, F::AvgPool2dFuncOptions(2));
  for (auto& layer : layers_) x = layer->forward(x);
  return x;
}

torch::Tensor ClipModifiedResNetImpl::encode_image(const torch::Tensor& images) { return attnpool(forward(images)); }

void ClipModifiedResNetImpl::fold_batchnorm() {
  fold_into(conv1, bn1);
  fold_into(conv2, bn2);
  fold_into(conv3, bn3);
  for (auto& layer : layers_)
    for (const auto& block : layer->children())
      if (auto* bottleneck = block->as<ClipBottleneckImpl>()) bottleneck->fold_batchnorm();
  folded_ = true;
}

// ---- VisionTransformer --------------------------------------------------------------------

ClipVisionTransformerImpl::ClipVisionTransformerImpl(const ClipViTOptions& options) : options_(options) {
  const int64_t width = options_.width, patch = options_.patch_size;
  if (patch < 1 || options_.layers < 1 || width < 1 || options_.output_dim < 1)
    fail_in("backbone", "CLIP ViT: patch size, width, layers and output width must be >= 1");
  check_heads(width, options_.heads, "CLIP ViT");
  const int64_t grid = options_.input_resolution / patch;
  if (grid < 1) fail_in("backbone", "CLIP ViT: the input resolution is smaller than one patch");
  // Own parameters first, then children: PyTorch's state_dict order for OpenAI's module.
  const double scale = 1.0 / std::sqrt(double(width));
  class_embedding = register_parameter("class_embedding", scale * torch::randn({width}));
  positional_embedding = register_parameter("positional_embedding", scale * torch::randn({grid * grid + 1, width}));
  proj = register_parameter("proj", scale * torch::randn({width, options_.output_dim}));
  conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(3, width, patch).stride(patch).bias(false)));
  ln_pre = register_module("ln_pre", nn::LayerNorm(nn::LayerNormOptions({width})));
  // OpenAI's default initialisation (initialize_parameters re-initialises the text side only).
  transformer_ = register_module("transformer", clip::ClipTransformer(width, options_.layers, options_.heads));
  ln_post = register_module("ln_post", nn::LayerNorm(nn::LayerNormOptions({width})));
}

torch::Tensor ClipVisionTransformerImpl::tokens(const torch::Tensor& images) {
  check_input(images, options_.patch_size, "CLIP ViT");
  auto x = conv1(images);  // [B, C, h, w]
  const int64_t batch = x.size(0), width = x.size(1), h = x.size(2), w = x.size(3);
  x = x.flatten(2).transpose(1, 2);  // [B, hw, C]
  auto class_token = class_embedding.to(x.scalar_type()).view({1, 1, width}).expand({batch, 1, width});
  x = torch::cat({class_token, x}, 1);
  x = x + resize_positional_embedding(positional_embedding, h, w).to(x.scalar_type());
  x = ln_pre(x);
  return transformer_(x);  // no mask: every token attends to every token
}

torch::Tensor ClipVisionTransformerImpl::forward(const torch::Tensor& images) {
  auto x = tokens(images);
  const int64_t h = images.size(2) / options_.patch_size, w = images.size(3) / options_.patch_size;
  // Patch tokens only, as a map: [B, hw, C] -> [B, C, h, w].
  return x.slice(1, 1).transpose(1, 2).reshape({x.size(0), x.size(2), h, w});
}

torch::Tensor ClipVisionTransformerImpl::encode_image(const torch::Tensor& images) {
  auto x = tokens(images);
  return torch::matmul(ln_post(x.select(1, 0)), proj.to(x.scalar_type()));
}

// ---- OpenAI's models by name --------------------------------------------------------------

const std::vector<ClipVisualSpec>& clip_visual_specs() {
  // OpenAI's build_model: ResNet heads = width * 32 / 64, ViT heads = width / 64.
  static const std::vector<ClipVisualSpec> specs = [] {
    auto resnet = [](const std::string& name, const std::string& openai, std::vector<int64_t> layers, int64_t width,
                     int64_t output_dim, int64_t resolution) {
      ClipVisualSpec spec;
      spec.name = name;
      spec.openai = openai;
      spec.resnet = ClipResNetOptions{std::move(layers), width, width * 32 / 64, output_dim, resolution};
      return spec;
    };
    auto vit = [](const std::string& name, const std::string& openai, int64_t patch, int64_t width, int64_t layers,
                  int64_t output_dim, int64_t resolution) {
      ClipVisualSpec spec;
      spec.name = name;
      spec.openai = openai;
      spec.vit = true;
      spec.vit_options = ClipViTOptions{patch, width, layers, width / 64, output_dim, resolution};
      return spec;
    };
    return std::vector<ClipVisualSpec>{
        resnet("clip_rn50", "RN50", {3, 4, 6, 3}, 64, 1024, 224),
        resnet("clip_rn101", "RN101", {3, 4, 23, 3}, 64, 512, 224),
        resnet("clip_rn50x4", "RN50x4", {4, 6, 10, 6}, 80, 640, 288),
        resnet("clip_rn50x16", "RN50x16", {6, 8, 18, 8}, 96, 768, 384),
        resnet("clip_rn50x64", "RN50x64", {3, 15, 36, 10}, 128, 1024, 448),
        vit("clip_vit_b32", "ViT-B/32", 32, 768, 12, 512, 224),
        vit("clip_vit_b16", "ViT-B/16", 16, 768, 12, 512, 224),
        vit("clip_vit_l14", "ViT-L/14", 14, 1024, 24, 768, 224),
        vit("clip_vit_l14_336", "ViT-L/14@336px", 14, 1024, 24, 768, 336),
    };
  }();
  return specs;
}

bool is_clip_visual_name(const std::string& name) {
  for (const auto& spec : clip_visual_specs())
    if (spec.name == name) return true;
  return false;
}

const ClipVisualSpec& clip_visual_spec(const std::string& name) {
  std::string valid;
  for (const auto& spec : clip_visual_specs()) {
    if (spec.name == name) return spec;
    valid += (valid.empty() ? "" : ", ") + spec.name;
  }
  fail_in("backbone", "unknown CLIP backbone '" + name + "' (choose one of " + valid + ")");
}

std::shared_ptr<ClipVisualBackbone> make_clip_visual(const ClipVisualSpec& spec) {
  if (spec.vit) return ClipVisionTransformer(spec.vit_options).ptr();
  return ClipModifiedResNet(spec.resnet).ptr();
}

void load_clip_visual_weights(Backbone& backbone, const NamedTensors& all, const std::string& source) {
  auto* tower = dynamic_cast<ClipVisualBackbone*>(&backbone);
  if (!tower) fail_in(source, "CLIP image-tower weights need a CLIP backbone (model.backbone: clip_...)");
  const std::string prefix = "visual.";
  auto is_visual = [&prefix](const std::string& name) { return name.compare(0, prefix.size(), prefix) == 0; };
  bool any_visual = false, file_is_vit = false, file_is_resnet = false;
  for (const auto& entry : all) {
    any_visual = any_visual || is_visual(entry.first);
    file_is_vit = file_is_vit || entry.first == "visual.class_embedding";
    file_is_resnet = file_is_resnet || entry.first == "visual.attnpool.positional_embedding";
  }
  if (!any_visual) fail_in(source, "holds no visual.* tensors (not a CLIP checkpoint with an image tower)");
  if (file_is_vit && !tower->is_vision_transformer())
    fail_in(source, "holds a CLIP ViT image tower (visual.class_embedding), but the backbone is a ModifiedResNet; "
                    "choose a clip_vit_* backbone");
  if (file_is_resnet && tower->is_vision_transformer())
    fail_in(source, "holds a CLIP ModifiedResNet image tower (visual.attnpool.*), but the backbone is a ViT; "
                    "choose a clip_rn* backbone");

  // Strict, with the checkpoint's own names (visual.*) in every message; half precision is
  // converted to the backbone's float32 by the copy.
  LoadStateOptions options;
  options.rename = [&](const std::string& name) -> std::optional<std::string> {
    if (!is_visual(name)) return std::nullopt;  // the text side, logit_scale, ...
    return name.substr(prefix.size());
  };
  options.state_name = [&prefix](const std::string& name) { return prefix + name; };
  options.state_noun = "checkpoint";
  options.module_noun = "backbone";
  options.mismatch_hint = " (is model.backbone the CLIP model this checkpoint holds?)";
  load_named_state(backbone, all, source, options);
}

}  // namespace cprfl
