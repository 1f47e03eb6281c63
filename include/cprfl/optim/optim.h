#pragma once
// Optimizer set-up and the EMA of weights.
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cprfl/optim/schedule.h"

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

// Exponential moving average of every parameter and floating buffer, kept in a second
// instance of the model so it can be evaluated directly:
// average = decay * average + (1 - decay) * current; integer buffers and the constant W
// (model/cprfl.h, kPromptEmbeddingsKey) are copied.
class WeightEma {
 public:
  WeightEma(torch::nn::Module& average, const torch::nn::Module& model, double decay);
  void update(const torch::nn::Module& model);
  double decay() const { return decay_; }

 private:
  double decay_;
  std::vector<torch::Tensor> average_;  // aliases of the average model's tensors, in named_state order
  std::vector<bool> averaged_;          // false: copied (integer buffers, W)
};

}  // namespace cprfl
