#include "cprfl/train/optim.h"

#include <set>

#include "cprfl/common/error.h"

namespace cprfl {
namespace {

bool no_decay(const std::string& name, const torch::Tensor& parameter) {
  return parameter.dim() <= 1 || (name.size() >= 5 && name.compare(name.size() - 5, 5, ".bias") == 0);
}

std::string shape_text(const torch::Tensor& t) {
  std::string text = "[";
  for (int64_t i = 0; i < t.dim(); ++i) text += (i ? ", " : "") + std::to_string(t.size(i));
  return text + "]";
}

}  // namespace

OptimizerBundle make_optimizer(const torch::nn::Module& model, const OptimizerOptions& options) {
  // Four groups: {backbone, head} × {decay, no_decay}; empty groups are left out.
  std::map<std::string, std::vector<torch::Tensor>> groups;
  for (const auto& item : model.named_parameters(true)) {
    if (!item.value().requires_grad()) continue;
    bool backbone = item.key().rfind(options.backbone_prefix, 0) == 0;
    std::string group = std::string(backbone ? "backbone" : "head") + (no_decay(item.key(), item.value()) ? "/no_decay" : "/decay");
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

std::map<std::string, torch::Tensor> module_state(const torch::nn::Module& model) {
  std::map<std::string, torch::Tensor> state;
  for (const auto& item : model.named_parameters(true)) state[item.key()] = item.value();
  for (const auto& item : model.named_buffers(true)) state[item.key()] = item.value();
  return state;
}

void load_module_state(torch::nn::Module& model, const std::map<std::string, torch::Tensor>& state,
                       const std::string& origin) {
  torch::NoGradGuard no_grad;
  auto target = module_state(model);
  for (const auto& [name, tensor] : state)
    if (!target.count(name)) throw Error(origin + ": unexpected tensor '" + name + "' (not in the model)");
  for (auto& [name, tensor] : target) {
    auto found = state.find(name);
    if (found == state.end()) throw Error(origin + ": missing tensor '" + name + "'");
    if (!found->second.sizes().equals(tensor.sizes())) {
      throw Error(origin + ": tensor '" + name + "' has shape " + shape_text(found->second) + ", the model expects " +
                  shape_text(tensor));
    }
    tensor.copy_(found->second);
  }
}

WeightEma::WeightEma(const torch::nn::Module& model, double decay) : decay_(decay) {
  torch::NoGradGuard no_grad;
  for (auto& [name, tensor] : module_state(model)) state_[name] = tensor.detach().clone();
}

void WeightEma::update(const torch::nn::Module& model) {
  torch::NoGradGuard no_grad;
  for (auto& [name, tensor] : module_state(model)) {
    auto& average = state_.at(name);
    if (average.is_floating_point())
      average.mul_(decay_).add_(tensor.detach(), 1.0 - decay_);
    else
      average.copy_(tensor);
  }
}

}  // namespace cprfl
