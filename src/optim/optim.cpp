#include "cprfl/optim/optim.h"

#include "cprfl/common/error.h"
#include "cprfl/model/classifier.h"
#include "cprfl/model/cprfl.h"
#include "cprfl/io/state_dict.h"

namespace cprfl {
OptimizerBundle make_optimizer(const torch::nn::Module& model, const OptimizerOptions& options) {
  // Four groups: {backbone, head} × {decay, no_decay}; empty groups are left out.
  std::map<std::string, std::vector<torch::Tensor>> groups;
  for (const auto& item : model.named_parameters(true)) {
    if (!item.value().requires_grad()) continue;
    bool backbone = item.key().rfind(options.backbone_prefix, 0) == 0;
    std::string group = std::string(backbone ? "backbone" : "head") + (takes_weight_decay(item.key(), item.value()) ? "/decay" : "/no_decay");
    groups[group].push_back(item.value());
  }
  if (groups.empty()) throw Error("optimizer: the model has no trainable parameters");
  OptimizerBundle bundle;
  std::vector<torch::optim::OptimizerParamGroup> param_groups;
  for (auto& [name, parameters] : groups) {
    bool backbone = name.rfind("backbone", 0) == 0;
    double lr = options.lr * (backbone ? options.backbone_lr_mult : 1.0);
    double decay = name.find("no_decay") != std::string::npos ? 0.0 : options.weight_decay;
    std::unique_ptr<torch::optim::OptimizerOptions> group_options;
    if (options.name == "adamw") {
      group_options = std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(lr).weight_decay(decay));
    } else if (options.name == "adam") {
      group_options = std::make_unique<torch::optim::AdamOptions>(torch::optim::AdamOptions(lr).weight_decay(decay));
    } else {
      throw Error("optim.name: unknown optimizer '" + options.name + "' (adamw, adam)");
    }
    param_groups.emplace_back(parameters, std::move(group_options));
    bundle.group_max_lr.push_back(lr);
    bundle.group_names.push_back(name);
  }
  if (options.name == "adamw")
    bundle.optimizer = std::make_unique<torch::optim::AdamW>(param_groups, torch::optim::AdamWOptions(options.lr));
  else
    bundle.optimizer = std::make_unique<torch::optim::Adam>(param_groups, torch::optim::AdamOptions(options.lr));
  return bundle;
}

void apply_schedule(OptimizerBundle& bundle, const LrSchedule& schedule, std::int64_t step) {
  auto momentum = schedule.momentum_at(step);
  auto& groups = bundle.optimizer->param_groups();
  for (std::size_t g = 0; g < groups.size(); ++g) {
    auto& options = groups[g].options();
    options.set_lr(schedule.lr_at(step, bundle.group_max_lr[g]));
    if (!momentum) continue;
    if (auto* adamw = dynamic_cast<torch::optim::AdamWOptions*>(&options)) {
      adamw->betas(std::make_tuple(*momentum, std::get<1>(adamw->betas())));
    } else if (auto* adam = dynamic_cast<torch::optim::AdamOptions*>(&options)) {
      adam->betas(std::make_tuple(*momentum, std::get<1>(adam->betas())));
    }
  }
}

WeightEma::WeightEma(torch::nn::Module& average, const torch::nn::Module& model, double decay) : decay_(decay) {
  torch::NoGradGuard no_grad;
  auto source = named_state(model);
  auto target = named_state(average);
  if (source.size() != target.size()) throw Error("EMA: the average model's tensors differ from the model's");
  for (std::size_t i = 0; i < target.size(); ++i) {
    target[i].second.copy_(source[i].second);
    average_.push_back(target[i].second);
    // W is a constant: averaging it would only add rounding (d·x + (1−d)·x ≠ x in float32),
    // and the model file keeps one exact W for both sets of weights.
    averaged_.push_back(target[i].second.is_floating_point() && target[i].first != kPromptEmbeddingsKey);
  }
}

void WeightEma::update(const torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  auto source = named_state(model);
  for (std::size_t i = 0; i < average_.size(); ++i) {
    auto& average = average_[i];
    if (averaged_[i])
      average.mul_(decay_).add_(source[i].second.detach(), 1.0 - decay_);
    else
      average.copy_(source[i].second);
  }
}

}  // namespace cprfl
