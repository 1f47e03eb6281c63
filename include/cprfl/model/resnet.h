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

#include "cprfl/model/backbone.h"

namespace cprfl {

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

}  // namespace cprfl
