#include "cprfl/model/classifier.h"

#include <torch/nn/modules/conv.h>

#include "cprfl/common/error.h"

namespace cprfl {

bool takes_weight_decay(const std::string& name, const torch::Tensor& parameter) {
  const std::string bias = ".bias";
  const bool is_bias = name == "bias" ||
                       (name.size() > bias.size() && name.compare(name.size() - bias.size(), bias.size(), bias) == 0);
  return parameter.dim() >= 2 && !is_bias;
}

MultiLabelClassifier::MultiLabelClassifier(std::shared_ptr<Backbone> backbone) {
  if (!backbone) fail_in("model", "no backbone given");
  backbone_ = register_module("backbone", std::move(backbone));
}

std::vector<ParameterGroup> MultiLabelClassifier::parameter_groups() const {
  std::vector<ParameterGroup> groups(4);
  groups[0].name = "backbone";
  groups[0].backbone = true;
  groups[1].name = "backbone_no_decay";
  groups[1].backbone = true;
  groups[1].weight_decay = false;
  groups[2].name = "head";
  groups[3].name = "head_no_decay";
  groups[3].weight_decay = false;
  const std::string prefix = "backbone.";
  for (const auto& item : named_parameters()) {
    if (!item.value().requires_grad()) continue;
    const bool in_backbone = item.key().compare(0, prefix.size(), prefix) == 0;
    const bool decay = takes_weight_decay(item.key(), item.value());
    auto& group = groups[(in_backbone ? 0 : 2) + (decay ? 0 : 1)];
    group.names.push_back(item.key());
    group.parameters.push_back(item.value());
  }
  return groups;
}

PooledLinearHeadImpl::PooledLinearHeadImpl(int64_t in_channels, int64_t num_classes) {
  if (in_channels < 1 || num_classes < 1)
    fail_in("model", "a linear head needs input channels and classes >= 1");
  fc = register_module("fc", torch::nn::Linear(in_channels, num_classes));
}

torch::Tensor PooledLinearHeadImpl::forward(const torch::Tensor& feature_map) {
  return fc(feature_map.mean({2, 3}));
}

LinearHeadModelImpl::LinearHeadModelImpl(std::shared_ptr<Backbone> backbone, int64_t num_classes, bool zero_init)
    : MultiLabelClassifier(std::move(backbone)), num_classes_(num_classes) {
  head = register_module("head", PooledLinearHead(backbone_->out_channels(), num_classes));
  if (zero_init) {
    torch::NoGradGuard no_grad;
    head->fc->weight.zero_();
    head->fc->bias.zero_();
  }
}

void MultiLabelClassifier::backbone_to(torch::ScalarType dtype) {
  backbone_->to(dtype);
  // Module::to converts registered tensors only; a folded convolution's bias is a plain member
  // (fold_into, model/resnet.cpp).
  for (auto& module : backbone_->modules())
    if (auto* conv = module->as<torch::nn::Conv2dImpl>())
      if (conv->bias.defined()) conv->bias = conv->bias.to(dtype);
}

void MultiLabelClassifier::set_compute_dtype(torch::ScalarType dtype) {
  to(dtype);
  backbone_to(dtype);
  compute_dtype_ = dtype;
}

torch::Tensor LinearHeadModelImpl::forward(const torch::Tensor& images) {
  return head(backbone_->forward(images.to(compute_dtype_))).to(torch::kFloat);
}

}  // namespace cprfl
