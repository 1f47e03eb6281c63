#include <gtest/gtest.h>

#include <cmath>

#include "cprfl/optim/optim.h"
#include "cprfl/optim/schedule.h"

using namespace cprfl;

// Values of PyTorch's OneCycleLR(max_lr=1, total_steps=100) worked out by hand:
// initial = 1/25 = 0.04, final = 0.04/1e4 = 4e-6, warm-up ends at step 0.1*100-1 = 9.
TEST(Schedule, OneCycleMatchesPyTorchFormula) {
  LrSchedule schedule({"onecycle", 100, 0.1, 25.0, 1e4});
  EXPECT_NEAR(schedule.lr_at(0, 1.0), 0.04, 1e-12);
  EXPECT_NEAR(schedule.lr_at(9, 1.0), 1.0, 1e-12);
  // step 5: 1 + (0.04 - 1)/2 * (cos(5π/9) + 1) = 1 - 0.48 * 0.826352 = 0.603351
  EXPECT_NEAR(schedule.lr_at(5, 1.0), 0.603351, 1e-6);
  EXPECT_NEAR(schedule.lr_at(99, 1.0), 4e-6, 1e-12);
  // midway through annealing (step 54 = 9 + 45, pct 0.5): (1 + 4e-6)/2
  EXPECT_NEAR(schedule.lr_at(54, 1.0), (1.0 + 4e-6) / 2, 1e-9);
  EXPECT_NEAR(*schedule.momentum_at(0), 0.95, 1e-12);
  EXPECT_NEAR(*schedule.momentum_at(9), 0.85, 1e-12);
  EXPECT_NEAR(*schedule.momentum_at(99), 0.95, 1e-12);
  EXPECT_NEAR(schedule.lr_at(0, 0.1), 0.004, 1e-12);  // scales with the group's peak
}

TEST(Schedule, CosineAndConstant) {
  LrSchedule cosine({"cosine", 11});
  EXPECT_NEAR(cosine.lr_at(0, 2.0), 2.0, 1e-12);
  EXPECT_NEAR(cosine.lr_at(5, 2.0), 1.0, 1e-12);
  EXPECT_NEAR(cosine.lr_at(10, 2.0), 0.0, 1e-12);
  EXPECT_FALSE(cosine.momentum_at(3).has_value());
  LrSchedule constant({"constant", 5});
  EXPECT_EQ(constant.lr_at(3, 0.5), 0.5);
}

namespace {
struct TinyImpl : torch::nn::Module {
  TinyImpl() {
    backbone = register_module("backbone", torch::nn::Linear(3, 4));
    head = register_module("head", torch::nn::Linear(4, 2));
    norm = register_module("norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({2})));
  }
  torch::Tensor forward(torch::Tensor x) { return norm(head(backbone(x))); }
  torch::nn::Linear backbone{nullptr}, head{nullptr};
  torch::nn::LayerNorm norm{nullptr};
};
TORCH_MODULE(Tiny);
}  // namespace

TEST(Optimizer, GroupsSeparateBackboneAndNoDecay) {
  Tiny model;
  auto bundle = make_optimizer(*model, {"adamw", 1.0, 0.1, 0.1, "backbone."});
  ASSERT_EQ(bundle.group_names, (std::vector<std::string>{"backbone/decay", "backbone/no_decay", "head/decay", "head/no_decay"}));
  EXPECT_EQ(bundle.group_max_lr, (std::vector<double>{0.1, 0.1, 1.0, 1.0}));
  auto& groups = bundle.optimizer->param_groups();
  EXPECT_EQ(groups[1].params().size(), 1u);  // backbone.bias
  EXPECT_EQ(groups[3].params().size(), 3u);  // head.bias, norm.weight, norm.bias
  EXPECT_DOUBLE_EQ(static_cast<torch::optim::AdamWOptions&>(groups[0].options()).weight_decay(), 0.1);
  EXPECT_DOUBLE_EQ(static_cast<torch::optim::AdamWOptions&>(groups[3].options()).weight_decay(), 0.0);
  LrSchedule schedule({"onecycle", 10, 0.3});
  apply_schedule(bundle, schedule, 0);
  EXPECT_NEAR(groups[0].options().get_lr(), 0.1 / 25, 1e-12);
  EXPECT_NEAR(std::get<0>(static_cast<torch::optim::AdamWOptions&>(groups[2].options()).betas()), 0.95, 1e-12);
}

TEST(WeightEma, AveragesIntoASecondModel) {
  Tiny model, average;
  WeightEma ema(*average, *model, 0.9);
  EXPECT_TRUE(torch::equal(average->head->weight, model->head->weight));
  auto before = average->head->weight.clone();
  {
    torch::NoGradGuard no_grad;
    model->head->weight.add_(1.0);
  }
  ema.update(*model);
  EXPECT_TRUE(torch::allclose(average->head->weight, before + 0.1, 1e-6, 1e-6));
}
