#include "cprfl/train/diagnostics.h"

#include <cmath>

namespace cprfl {

nlohmann::json weight_diagnostics(MultiLabelClassifier& model, const OptimizerBundle& optimizer) {
  torch::NoGradGuard no_grad;
  nlohmann::json lr = nlohmann::json::object();
  const auto& groups = optimizer.optimizer->param_groups();
  for (std::size_t g = 0; g < groups.size() && g < optimizer.group_names.size(); ++g)
    lr[optimizer.group_names[g]] = groups[g].options().get_lr();

  // The trunk as one figure (dozens of tensors); the head's tensors one by one (few, and the
  // ones a head-specific fault would show in).
  nlohmann::json norms = nlohmann::json::object();
  double backbone_squares = 0;
  const std::string prefix = "backbone.";
  for (const auto& item : model.named_parameters()) {
    const double squares = item.value().detach().to(torch::kDouble).pow(2).sum().item<double>();
    if (item.key().compare(0, prefix.size(), prefix) == 0)
      backbone_squares += squares;
    else
      norms[item.key()] = std::sqrt(squares);
  }
  norms["backbone"] = std::sqrt(backbone_squares);

  nlohmann::json batchnorm = nlohmann::json::object();
  for (const auto& item : model.named_modules("", /*include_self=*/false)) {
    auto* bn = item.value()->as<torch::nn::BatchNorm2dImpl>();
    if (!bn || !bn->running_mean.defined()) continue;
    batchnorm[item.key()] = {{"running_mean_abs", bn->running_mean.abs().mean().item<double>()},
                             {"running_var", bn->running_var.mean().item<double>()}};
  }
  return {{"lr_groups", lr}, {"weight_norms", norms}, {"batchnorm", batchnorm}};
}

}  // namespace cprfl
