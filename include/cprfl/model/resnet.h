#pragma once
// Convolutional trunks: images [B, 3, H, W] -> feature map [B, d0, h, w] (last pooling and
// classifier removed, docs/METHOD.md §1).
//  - ResNet-18/34/50/101 in torchvision's v1.5 layout (stride on the 3x3 conv of a
//    Bottleneck) with torchvision's parameter and buffer names, so a torchvision state dict
//    (minus fc.*) loads 1:1 with load_named_state.
//  - SmallResNet: a few BasicBlocks, total stride 8, for Fashion-LT on two CPU cores
//    (64x64 scene -> 8x8 = 64 tokens; 28x28 item -> 4x4).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/batchnorm.h>
#include <torch/nn/modules/container/sequential.h>
#include <torch/nn/modules/conv.h>
#include <torch/nn/modules/pooling.h>

namespace cprfl {

// What every trunk offers the heads on top of it.
class Backbone : public torch::nn::Module {
 public:
  virtual torch::Tensor forward(const torch::Tensor& images) = 0;
  virtual int64_t out_channels() const = 0;  // d0
  virtual int64_t stride() const = 0;        // input pixels per feature-map cell, per side
  // Inference only: folds every BatchNorm (its running statistics) into the convolution
  // before it, which gains a bias; the BatchNorm modules are then skipped. Outputs are those
  // of eval mode up to rounding. Afterwards the trunk refuses to run in training mode, and its
  // state no longer matches a saved model's, so fold a copy that is used only to predict.
  // Trunks without BatchNorm (the CLIP ViTs) keep this no-op.
  virtual void fold_batchnorm() {}
  bool batchnorm_folded() const { return folded_; }

 protected:
  bool folded_ = false;
};

// BatchNorm folding, for trunks implementing Backbone::fold_batchnorm: `conv` takes eval-mode
// `bn` into its weights and a new bias (bn is then skipped by the caller), and a folded trunk
// refuses training mode with a clear error.
void fold_into(torch::nn::Conv2d conv, torch::nn::BatchNorm2d bn);
void refuse_training_if_folded(bool folded, bool training);

// torchvision BasicBlock: two 3x3 convs; names conv1, bn1, conv2, bn2, downsample.{0,1}.
class BasicBlockImpl : public torch::nn::Module {
 public:
  static constexpr int64_t kExpansion = 1;
  BasicBlockImpl(int64_t in_channels, int64_t planes, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);
  void fold_batchnorm();  // see Backbone::fold_batchnorm

 private:
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr};
  torch::nn::Sequential downsample{nullptr};
  bool folded_ = false;
};
TORCH_MODULE(BasicBlock);

// torchvision Bottleneck (v1.5: the stride sits on conv2, the 3x3); names conv1..3, bn1..3,
// downsample.{0,1}.
class BottleneckImpl : public torch::nn::Module {
 public:
  static constexpr int64_t kExpansion = 4;
  BottleneckImpl(int64_t in_channels, int64_t planes, int64_t stride);
  torch::Tensor forward(const torch::Tensor& x);
  void fold_batchnorm();  // see Backbone::fold_batchnorm

 private:
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::Sequential downsample{nullptr};
  bool folded_ = false;
};
TORCH_MODULE(Bottleneck);

// depth 18, 34 (BasicBlock; d0 = 512) or 50, 101 (Bottleneck; d0 = 2048); total stride 32.
// Weights start as torchvision's do (Kaiming-normal convs, BN weight 1 / bias 0).
class ResNetImpl : public Backbone {
 public:
  explicit ResNetImpl(int64_t depth);
  torch::Tensor forward(const torch::Tensor& images) override;
  int64_t out_channels() const override { return out_channels_; }
  int64_t stride() const override { return 32; }
  void fold_batchnorm() override;
  int64_t depth() const { return depth_; }

 private:
  int64_t depth_;
  int64_t out_channels_ = 0;
  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  torch::nn::MaxPool2d maxpool{nullptr};
  torch::nn::Sequential layer1{nullptr}, layer2{nullptr}, layer3{nullptr}, layer4{nullptr};
};
TORCH_MODULE(ResNet);

struct SmallResNetOptions {
  // Channels of each stage; the stem (3x3 conv) has widths[0] channels; d0 = widths.back().
  // The resolution halves once per stage, so 3 stages = total stride 8.
  std::vector<int64_t> widths{32, 64, 128};
  // BasicBlocks per stage.
  std::vector<int64_t> blocks{1, 1, 1};
  // Where the first halving happens: 2 = in the stem conv (layer1 keeps its input size);
  // 1 = the stem runs at full resolution and layer1 strides instead. Same total stride;
  // 2 is the default because it measured much faster (bench/results/model.json).
  int64_t stem_stride = 2;
};

// conv1 (3x3) -> bn1 -> relu -> layer1 ... layerN (torchvision-style names).
class SmallResNetImpl : public Backbone {
 public:
  explicit SmallResNetImpl(const SmallResNetOptions& options = {});
  torch::Tensor forward(const torch::Tensor& images) override;
  int64_t out_channels() const override { return options_.widths.back(); }
  int64_t stride() const override { return int64_t{1} << options_.widths.size(); }
  void fold_batchnorm() override;
  const SmallResNetOptions& options() const { return options_; }

 private:
  SmallResNetOptions options_;
  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  std::vector<torch::nn::Sequential> layers_;
};
TORCH_MODULE(SmallResNet);

struct BuiltBackbone {
  std::shared_ptr<Backbone> module;
  int64_t out_channels = 0;  // d0
};

// "resnet18" | "resnet34" | "resnet50" | "resnet101" | "small" (built from `small`) | a CLIP
// image tower: "clip_rn50", "clip_vit_b16", ... (cprfl/model/clip_visual.h).
// An unknown name is a cprfl::Error listing the valid ones.
BuiltBackbone make_backbone(const std::string& name, const SmallResNetOptions& small = {});
std::vector<std::string> backbone_names();

}  // namespace cprfl
