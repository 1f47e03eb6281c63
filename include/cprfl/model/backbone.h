#pragma once
// What every visual trunk offers the heads on top of it, and the options of the one trunk
// sized by the config (the small ResNet). The trunks themselves: model/resnet.h and
// model/clip_visual.h; the table of them: model/backbone_registry.h.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>

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

}  // namespace cprfl
