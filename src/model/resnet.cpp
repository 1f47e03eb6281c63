#include "cprfl/model/resnet.h"

#include "cprfl/common/error.h"

namespace cprfl {

namespace nn = torch::nn;

namespace {

nn::Conv2d conv3x3(int64_t in, int64_t out, int64_t stride) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false));
}

nn::Conv2d conv1x1(int64_t in, int64_t out, int64_t stride) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, 1).stride(stride).bias(false));
}

// The shortcut projection torchvision adds when the shape changes: 1x1 conv + BN.
nn::Sequential make_downsample(int64_t in, int64_t out, int64_t stride) {
  if (stride == 1 && in == out) return nullptr;
  return nn::Sequential(conv1x1(in, out, stride), nn::BatchNorm2d(out));
}

template <typename Block>
nn::Sequential make_stage(int64_t& in_channels, int64_t planes, int64_t blocks, int64_t stride) {
  nn::Sequential stage;
  for (int64_t i = 0; i < blocks; ++i) {
    stage->push_back(Block(in_channels, planes, i == 0 ? stride : 1));
    in_channels = planes * Block::Impl::kExpansion;
  }
  return stage;
}

// torchvision's initialisation: Kaiming-normal (fan_out, ReLU) convs; BN weight 1, bias 0
// (LibTorch's BatchNorm default already).
void init_convolutions(nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& child : module.modules(/*include_self=*/false))
    if (auto* conv = child->as<nn::Conv2d>())
      nn::init::kaiming_normal_(conv->weight, 0.0, torch::kFanOut, torch::kReLU);
}

}  // namespace

// Eval-mode BN(conv(x)) = conv'(x) with weight·γ/σ per output channel and bias β − μ·γ/σ
// (σ = sqrt(running_var + eps)).
void fold_into(nn::Conv2d conv, nn::BatchNorm2d bn) {
  torch::NoGradGuard no_grad;
  auto scale = bn->weight / torch::sqrt(bn->running_var + bn->options.eps());
  auto shift = bn->bias - bn->running_mean * scale;
  if (conv->bias.defined()) shift = shift + conv->bias * scale;
  conv->weight.mul_(scale.reshape({-1, 1, 1, 1}));
  // The member, not a registered parameter (the slot is taken by an undefined one): the
  // folded trunk is an inference copy, never saved or trained.
  conv->bias = shift.detach().clone();
}

void refuse_training_if_folded(bool folded, bool training) {
  if (folded && training)
    fail_in("backbone", "this trunk's BatchNorms are folded for inference; it cannot be trained");
}

namespace {

void fold_downsample(nn::Sequential downsample) {
  if (downsample)
    fold_into(nn::Conv2d(std::dynamic_pointer_cast<nn::Conv2dImpl>(downsample->ptr(0))),
              nn::BatchNorm2d(std::dynamic_pointer_cast<nn::BatchNorm2dImpl>(downsample->ptr(1))));
}

// The shortcut: identity, or the projection (its conv alone once folded).
torch::Tensor shortcut(nn::Sequential downsample, bool folded, const torch::Tensor& x) {
  if (!downsample) return x;
  return folded ? downsample[0]->as<nn::Conv2d>()->forward(x) : downsample->forward(x);
}

}  // namespace

BasicBlockImpl::BasicBlockImpl(int64_t in_channels, int64_t planes, int64_t stride) {
  conv1 = register_module("conv1", conv3x3(in_channels, planes, stride));
  bn1 = register_module("bn1", nn::BatchNorm2d(planes));
  conv2 = register_module("conv2", conv3x3(planes, planes, 1));
  bn2 = register_module("bn2", nn::BatchNorm2d(planes));
  if (auto projection = make_downsample(in_channels, planes * kExpansion, stride))
    downsample = register_module("downsample", projection);
}

torch::Tensor BasicBlockImpl::forward(const torch::Tensor& x) {
  if (folded_) {
    auto out = conv2(torch::relu(conv1(x)));
    out += shortcut(downsample, true, x);
    return torch::relu(out);
  }
  auto out = torch::relu(bn1(conv1(x)));
  out = bn2(conv2(out));
  out += shortcut(downsample, false, x);
  return torch::relu(out);
}

void BasicBlockImpl::fold_batchnorm() {
  fold_into(conv1, bn1);
  fold_into(conv2, bn2);
  fold_downsample(downsample);
  folded_ = true;
}

BottleneckImpl::BottleneckImpl(int64_t in_channels, int64_t planes, int64_t stride) {
  conv1 = register_module("conv1", conv1x1(in_channels, planes, 1));
  bn1 = register_module("bn1", nn::BatchNorm2d(planes));
  conv2 = register_module("conv2", conv3x3(planes, planes, stride));
  bn2 = register_module("bn2", nn::BatchNorm2d(planes));
  conv3 = register_module("conv3", conv1x1(planes, planes * kExpansion, 1));
  bn3 = register_module("bn3", nn::BatchNorm2d(planes * kExpansion));
  if (auto projection = make_downsample(in_channels, planes * kExpansion, stride))
    downsample = register_module("downsample", projection);
}

torch::Tensor BottleneckImpl::forward(const torch::Tensor& x) {
  if (folded_) {
    auto out = conv3(torch::relu(conv2(torch::relu(conv1(x)))));
    out += shortcut(downsample, true, x);
    return torch::relu(out);
  }
  auto out = torch::relu(bn1(conv1(x)));
  out = torch::relu(bn2(conv2(out)));
  out = bn3(conv3(out));
  out += shortcut(downsample, false, x);
  return torch::relu(out);
}

void BottleneckImpl::fold_batchnorm() {
  fold_into(conv1, bn1);
  fold_into(conv2, bn2);
  fold_into(conv3, bn3);
  fold_downsample(downsample);
  folded_ = true;
}

ResNetImpl::ResNetImpl(int64_t depth) : depth_(depth) {
  std::vector<int64_t> blocks;
  bool bottleneck = false;
  switch (depth) {
    case 18: blocks = {2, 2, 2, 2}; break;
    case 34: blocks = {3, 4, 6, 3}; break;
    case 50: blocks = {3, 4, 6, 3}; bottleneck = true; break;
    case 101: blocks = {3, 4, 23, 3}; bottleneck = true; break;
    default: fail_in("backbone", "ResNet depth " + std::to_string(depth) + " is not one of 18, 34, 50, 101");
  }
  conv1 = register_module("conv1", nn::Conv2d(nn::Conv2dOptions(3, 64, 7).stride(2).padding(3).bias(false)));
  bn1 = register_module("bn1", nn::BatchNorm2d(64));
  maxpool = register_module("maxpool", nn::MaxPool2d(nn::MaxPool2dOptions(3).stride(2).padding(1)));
  int64_t channels = 64;
  auto stage = [&](int64_t planes, int64_t count, int64_t stride) {
    return bottleneck ? make_stage<Bottleneck>(channels, planes, count, stride)
                      : make_stage<BasicBlock>(channels, planes, count, stride);
  };
  layer1 = register_module("layer1", stage(64, blocks[0], 1));
  layer2 = register_module("layer2", stage(128, blocks[1], 2));
  layer3 = register_module("layer3", stage(256, blocks[2], 2));
  layer4 = register_module("layer4", stage(512, blocks[3], 2));
  out_channels_ = channels;
  init_convolutions(*this);
}

namespace {

template <typename Block>
void fold_stage(nn::Sequential stage) {
  for (const auto& block : stage->children())
    if (auto* typed = block->as<Block>()) typed->fold_batchnorm();
}

}  // namespace

void ResNetImpl::fold_batchnorm() {
  if (folded_) return;
  fold_into(conv1, bn1);
  for (const auto& stage : {layer1, layer2, layer3, layer4}) {
    fold_stage<BasicBlockImpl>(stage);
    fold_stage<BottleneckImpl>(stage);
  }
  folded_ = true;
}

torch::Tensor ResNetImpl::forward(const torch::Tensor& images) {
  refuse_training_if_folded(folded_, is_training());
  auto x = maxpool(torch::relu(folded_ ? conv1(images) : bn1(conv1(images))));
  x = layer1->forward(x);
  x = layer2->forward(x);
  x = layer3->forward(x);
  return layer4->forward(x);
}

SmallResNetImpl::SmallResNetImpl(const SmallResNetOptions& options) : options_(options) {
  const auto& widths = options_.widths;
  const auto& blocks = options_.blocks;
  if (widths.empty() || widths.size() != blocks.size())
    fail_in("backbone", "small ResNet needs as many widths as block counts, and at least one stage (got " +
                            std::to_string(widths.size()) + " widths, " + std::to_string(blocks.size()) +
                            " block counts)");
  for (std::size_t i = 0; i < widths.size(); ++i)
    if (widths[i] < 1 || blocks[i] < 1)
      fail_in("backbone", "small ResNet stage " + std::to_string(i + 1) + " needs a width and a block count >= 1");
  if (options_.stem_stride != 1 && options_.stem_stride != 2)
    fail_in("backbone", "small ResNet stem stride must be 1 or 2, got " + std::to_string(options_.stem_stride));
  conv1 = register_module("conv1", conv3x3(3, widths[0], options_.stem_stride));
  bn1 = register_module("bn1", nn::BatchNorm2d(widths[0]));
  int64_t channels = widths[0];
  for (std::size_t i = 0; i < widths.size(); ++i)
    layers_.push_back(register_module("layer" + std::to_string(i + 1),
                                      make_stage<BasicBlock>(channels, widths[i], blocks[i], i == 0 ? 2 / options_.stem_stride : 2)));
  init_convolutions(*this);
}

void SmallResNetImpl::fold_batchnorm() {
  if (folded_) return;
  fold_into(conv1, bn1);
  for (const auto& stage : layers_) fold_stage<BasicBlockImpl>(stage);
  folded_ = true;
}

torch::Tensor SmallResNetImpl::forward(const torch::Tensor& images) {
  refuse_training_if_folded(folded_, is_training());
  auto x = torch::relu(folded_ ? conv1(images) : bn1(conv1(images)));
  for (auto& layer : layers_) x = layer->forward(x);
  return x;
}

}  // namespace cprfl
