#pragma once
// Optimizer set-up and the EMA of weights.
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cprfl/train/schedule.h"

namespace cprfl {

struct OptimizerOptions {
  std::string name = "adamw";       // adamw | adam (Adam applies weight decay as L2, as torch.optim.Adam)
  double lr = 1e-3;
  double weight_decay = 1e-4;       // on weights only: none on biases and 1-D parameters (norms)
  double backbone_lr_mult = 0.1;    // parameters whose name starts with backbone_prefix
  std::string backbone_prefix = "backbone.";
};

// The optimizer plus each parameter group's peak learning rate (the schedule scales them).
struct OptimizerBundle {
  std::unique_ptr<torch::optim::Optimizer> optimizer;
  std::vector<double> group_max_lr;
  std::vector<std::string> group_names;  // "backbone/decay", "head/no_decay", …
};

OptimizerBundle make_optimizer(const torch::nn::Module& model, const OptimizerOptions& options);

// Sets every group's lr (and beta1 when the schedule cycles it) for optimizer step `step`.
void apply_schedule(OptimizerBundle& bundle, const LrSchedule& schedule, std::int64_t step);

// Exponential moving average of every parameter and floating buffer:
// ema = decay * ema + (1 - decay) * current; integer buffers are copied.
class WeightEma {
 public:
  WeightEma(const torch::nn::Module& model, double decay);
  void update(const torch::nn::Module& model);
  const std::map<std::string, torch::Tensor>& state() const { return state_; }
  std::map<std::string, torch::Tensor>& state() { return state_; }
  double decay() const { return decay_; }

 private:
  double decay_;
  std::map<std::string, torch::Tensor> state_;
};

// Every parameter and buffer of a module by name (parameters first).
std::map<std::string, torch::Tensor> module_state(const torch::nn::Module& model);
// Copies `state` into the module's parameters/buffers; a missing or unexpected name or a
// shape mismatch is an error naming it (`origin` says where the state came from).
void load_module_state(torch::nn::Module& model, const std::map<std::string, torch::Tensor>& state,
                       const std::string& origin);

}  // namespace cprfl
