#pragma once
// The common face of the multi-label models (CPRFL and the linear-head baseline): images in,
// one logit per category out, plus the parameter groups an optimizer needs.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/nn/module.h>
#include <torch/nn/modules/linear.h>

#include "cprfl/model/resnet.h"

namespace cprfl {

// Trainable parameters of one kind. The recipe (docs/METHOD.md §7) gives the backbone its own
// learning rate and applies weight decay to weights only: biases and every 1-D parameter
// (BatchNorm/LayerNorm scales and shifts) are exempt.
struct ParameterGroup {
  std::string name;           // "backbone", "backbone_no_decay", "head", "head_no_decay"
  bool backbone = false;      // parameter lives under "backbone."
  bool weight_decay = true;   // false for biases and 1-D parameters
  std::vector<std::string> names;
  std::vector<torch::Tensor> parameters;
};

// True when a parameter takes weight decay: at least 2-D and not named "*.bias".
bool takes_weight_decay(const std::string& name, const torch::Tensor& parameter);

class MultiLabelClassifier : public torch::nn::Module {
 public:
  // Registers the trunk as "backbone" (so its parameter names start with "backbone.").
  explicit MultiLabelClassifier(std::shared_ptr<Backbone> backbone);
  virtual torch::Tensor forward(const torch::Tensor& images) = 0;  // logits [B, c]
  virtual int64_t num_classes() const = 0;
  const std::shared_ptr<Backbone>& backbone() const { return backbone_; }
  // The four groups in a fixed order (backbone, backbone_no_decay, head, head_no_decay),
  // each listing only parameters with requires_grad; a group may be empty.
  std::vector<ParameterGroup> parameter_groups() const;

  // The number format of the image-side work, for inference only (model/inference.h): its
  // weights are converted to `dtype` once, here; the forward then casts its images to it and
  // still returns float32 logits. CPRFL keeps its prompt side (W, PI, P) and the final dot
  // products in float32.
  virtual void set_compute_dtype(torch::ScalarType dtype);
  torch::ScalarType compute_dtype() const { return compute_dtype_; }

 protected:
  // The trunk's weights in `dtype`, including the biases that folding left as plain members.
  void backbone_to(torch::ScalarType dtype);

  std::shared_ptr<Backbone> backbone_;
  torch::ScalarType compute_dtype_ = torch::kFloat;
};

// Global average pool + Linear(d0, classes), on a feature map [B, d0, h, w] -> [B, classes].
// Module names: fc.weight, fc.bias.
class PooledLinearHeadImpl : public torch::nn::Module {
 public:
  PooledLinearHeadImpl(int64_t in_channels, int64_t num_classes);
  torch::Tensor forward(const torch::Tensor& feature_map);
  torch::nn::Linear fc{nullptr};
};
TORCH_MODULE(PooledLinearHead);

// The baseline: backbone + global average pool + Linear(d0, c). Also the single-label
// pretraining classifier (c = 10 item classes, trained with cross-entropy); the trunk's
// weights are then named_state(*model->backbone()), saved and loaded without the head.
class LinearHeadModelImpl : public MultiLabelClassifier {
 public:
  // zero_init: the head starts at all-zero weights and bias (logits 0, every probability 0.5).
  LinearHeadModelImpl(std::shared_ptr<Backbone> backbone, int64_t num_classes, bool zero_init = false);
  torch::Tensor forward(const torch::Tensor& images) override;
  int64_t num_classes() const override { return num_classes_; }
  PooledLinearHead head{nullptr};

 private:
  int64_t num_classes_;
};
TORCH_MODULE(LinearHeadModel);

}  // namespace cprfl
