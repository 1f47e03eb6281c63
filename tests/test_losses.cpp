#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "cprfl/common/error.h"
#include "cprfl/loss/losses.h"
#include "test_support.h"

using cprfl::testing::error_of;

using namespace cprfl;

namespace {


torch::Tensor row(std::vector<double> values) { return torch::tensor(values, torch::kDouble).unsqueeze(0); }

const double kLn3 = std::log(3.0);  // σ(ln 3) = 0.75
const double kLn9 = std::log(9.0);  // σ(−ln 9) = 0.1
const double kLn49 = std::log(49.0);  // σ(−ln 49) = 0.02

}  // namespace

TEST(Losses, AsymmetricLossMatchesHandArithmetic) {
  // p = [0.75, 0.75, 0.1, 0.02], y = [1, 0, 0, 0]; γ+ = 0, γ− = 4, μ = 0.05.
  // c0 positive:  −log 0.75 · (1 − 0.75)^0            = 0.2876821
  // c1 negative:  p_m = 1 − 0.75 + 0.05 = 0.30; −log 0.30 · (1 − 0.30)^4 = 1.2039728 · 0.2401 = 0.2890739
  // c2 negative:  p_m = 0.95; −log 0.95 · 0.05^4 = 0.0512933 · 6.25e-6 = 3.2058e-7
  // c3 negative:  p = 0.02 < μ, p_m = min(1.03, 1) = 1; −log 1 = 0
  // mean = (0.2876821 + 0.2890739 + 3.2058e-7 + 0) / 4 = 0.1441891
  auto logits = row({kLn3, kLn3, -kLn9, -kLn49});
  auto targets = row({1, 0, 0, 0});
  AsymmetricLoss asl;
  auto each = asl.elementwise(logits, targets);
  EXPECT_NEAR(each[0][0].item<double>(), 0.2876821, 1e-7);
  EXPECT_NEAR(each[0][1].item<double>(), 0.2890739, 1e-7);
  EXPECT_NEAR(each[0][2].item<double>(), 3.2058e-7, 1e-11);
  EXPECT_NEAR(each[0][3].item<double>(), 0.0, 1e-12);
  EXPECT_NEAR(asl(logits, targets).item<double>(), 0.1441891, 1e-7);
}

TEST(Losses, AsymmetricFocusingWeightCarriesNoGradient) {
  // With w constant, d(−L·w)/ds / K for K elements is:
  //   positive: −w·(1 − p)
  //   negative: +w·p·(1 − p)/p_m  where p_m < 1 (i.e. p > μ), else 0 (the clamp is flat).
  auto logits = torch::tensor({{2.0, -1.0, 0.3}, {-4.0, 0.7, -0.2}}, torch::kDouble).requires_grad_(true);
  auto targets = torch::tensor({{1.0, 0.0, 0.0}, {0.0, 1.0, 0.0}}, torch::kDouble);
  AsymmetricLoss asl;
  asl(logits, targets).backward();

  auto s = logits.detach();
  auto p = torch::sigmoid(s);
  auto p_m = (1 - p + 0.05).clamp_max(1.0);
  auto w = torch::pow(1 - p * targets - p_m * (1 - targets), 4.0 * (1 - targets));
  auto positive = -w * (1 - p);
  auto negative = w * p * (1 - p) / p_m * (p_m < 1).to(torch::kDouble);
  auto expected = (targets * positive + (1 - targets) * negative) / double(s.numel());
  EXPECT_TRUE(torch::allclose(logits.grad(), expected, 1e-12, 1e-14)) << logits.grad() << expected;

  // The same loss with gradient through w differs, so the check above is not vacuous.
  AsymmetricLossOptions with_grad;
  with_grad.focusing_weight_without_grad = false;
  auto other = s.clone().requires_grad_(true);
  AsymmetricLoss asl_with_grad(with_grad);
  asl_with_grad(other, targets).backward();
  EXPECT_FALSE(torch::allclose(other.grad(), expected, 1e-6, 1e-9));
}

TEST(Losses, BceAndMultiLabelSoftMarginMatchHandArithmetic) {
  // p = [0.75, 0.75], y = [1, 0]: −log 0.75 = 0.2876821, −log 0.25 = 1.3862944, mean 0.8369882
  auto logits = row({kLn3, kLn3});
  auto targets = row({1, 0});
  EXPECT_NEAR(BceLoss()(logits, targets).item<double>(), 0.8369882, 1e-7);
  EXPECT_NEAR(MultiLabelSoftMarginLoss()(logits, targets).item<double>(), 0.8369882, 1e-7);
  EXPECT_NEAR(BceLoss().elementwise(logits, targets)[0][1].item<double>(), 1.3862944, 1e-7);
}

TEST(Losses, FocalMatchesHandArithmetic) {
  // c0: BCE 0.2876821, p_t = 0.75: 2·0.25²·0.2876821 = 0.0359603
  // c1: BCE 1.3862944, p_t = 0.25: 2·0.75²·1.3862944 = 1.5595812; mean 0.7977707
  auto logits = row({kLn3, kLn3});
  auto targets = row({1, 0});
  FocalLoss focal;
  auto each = focal.elementwise(logits, targets);
  EXPECT_NEAR(each[0][0].item<double>(), 0.0359603, 1e-7);
  EXPECT_NEAR(each[0][1].item<double>(), 1.5595812, 1e-7);
  EXPECT_NEAR(focal(logits, targets).item<double>(), 0.7977707, 1e-7);
}

namespace {
// n = [10, 2, 5], N = 20; images y0 = {0, 1}, y1 = {2}.
ClassCounts tiny_counts() { return {{10, 2, 5}, 20}; }
torch::Tensor tiny_targets() { return torch::tensor({{1.0, 1.0, 0.0}, {0.0, 0.0, 1.0}}, torch::kDouble); }
}  // namespace

TEST(Losses, DistributionBalancedRebalanceWeightsOnTinyExample) {
  // 1/n = [0.1, 0.5, 0.2].
  // image 0: Σ = 0.1 + 0.5 = 0.6, r = [1/6, 5/6, 1/3]
  //   w = σ(10(r − 0.2)) + 0.1 = σ(−1/3) + 0.1, σ(6.333) + 0.1, σ(1.333) + 0.1 = 0.517430, 1.098227, 0.891391
  // image 1: Σ = 0.2, r = [0.5, 2.5, 1.0]
  //   w = σ(3) + 0.1, σ(23) + 0.1, σ(8) + 0.1 = 1.052574, 1.100000, 1.099665
  DistributionBalancedLoss db(tiny_counts());
  auto w = db.rebalance_weights(tiny_targets());
  auto expected = torch::tensor({{0.517430, 1.098227, 0.891391}, {1.052574, 1.100000, 1.099665}});
  EXPECT_TRUE(torch::allclose(w, expected, 0, 1e-6)) << w;
  // b = −log(N/n − 1)·κ/λ = −log([1, 9, 3])·0.025 = [0, −0.0549306, −0.0274653]
  EXPECT_TRUE(torch::allclose(db.bias(), torch::tensor({0.0, -0.0549306, -0.0274653}), 0, 1e-7)) << db.bias();
}

TEST(Losses, DistributionBalancedLossValuesOnTinyExample) {
  // s = 0 everywhere, so z = b on positives and λ·b = 2b on negatives; w' = w (pos), w/2 (neg).
  // (i, c)  z          w'        BCE(z, y)   DB = BCE·w'   DB-Focal = 2(1 − e^−BCE)²·BCE·w'
  // (0, 0)  0          0.517430  0.693147    0.358655      0.179328
  // (0, 1) −0.054931   1.098227  0.720990    0.791810      0.417945
  // (0, 2) −0.054931   0.445696  0.666059    0.296860      0.140390
  // (1, 0)  0          0.526287  0.693147    0.364794      0.182397
  // (1, 1) −0.109861   0.550000  0.639724    0.351848      0.157146
  // (1, 2) −0.027465   1.099665  0.706974    0.777434      0.399466
  // means: DB 0.4902337, DB-Focal 0.2461121
  auto logits = torch::zeros({2, 3}, torch::kDouble);
  DistributionBalancedOptions options;
  options.focal = false;
  DistributionBalancedLoss db(tiny_counts(), options);
  auto each = db.elementwise(logits, tiny_targets());
  EXPECT_NEAR(each[0][1].item<double>(), 0.791810, 1e-6);
  EXPECT_NEAR(each[1][1].item<double>(), 0.351848, 1e-6);
  EXPECT_NEAR(db(logits, tiny_targets()).item<double>(), 0.4902337, 1e-6);
  DistributionBalancedLoss db_focal(tiny_counts());
  EXPECT_NEAR(db_focal.elementwise(logits, tiny_targets())[1][2].item<double>(), 0.399466, 1e-6);
  EXPECT_NEAR(db_focal(logits, tiny_targets()).item<double>(), 0.2461121, 1e-6);
}

TEST(Losses, DistributionBalancedStaysFiniteOnDegenerateCounts) {
  // n_c = 0 (never seen) and n_c = N (in every image) would give 1/0 and log(0); an image
  // without labels has an empty sum in r. All stay finite; the empty image gets w = 1 + α.
  DistributionBalancedLoss db(ClassCounts{{0, 4, 3}, 4});
  EXPECT_TRUE(torch::isfinite(db.bias()).all().item<bool>()) << db.bias();
  auto targets = torch::tensor({{0.0, 1.0, 0.0}, {0.0, 0.0, 0.0}});
  auto w = db.rebalance_weights(targets);
  EXPECT_TRUE(torch::allclose(w[1], torch::full({3}, 1.1f))) << w;
  auto loss = db(torch::randn({2, 3}), targets);
  EXPECT_TRUE(std::isfinite(loss.item<double>()));
}

TEST(Losses, ClassBalancedFocalMatchesHandArithmetic) {
  // n = [1, 10], β = 0.9: weights (1 − 0.9)/(1 − 0.9) = 1, 0.1/(1 − 0.9^10) = 0.1/0.6513216 = 0.1535340
  // focal terms (as above) 0.0359603, 1.5595812 -> weighted 0.0359603, 0.2394487
  // loss = 10 · mean = 10 · (0.0359603 + 0.2394487)/2 = 1.3770449
  ClassBalancedFocalLoss cb(ClassCounts{{1, 10}, 20});
  EXPECT_TRUE(torch::allclose(cb.class_weights(), torch::tensor({1.0f, 0.1535340f}), 0, 1e-6));
  EXPECT_NEAR(cb(row({kLn3, kLn3}), row({1, 0})).item<double>(), 1.3770449, 1e-6);
}

TEST(Losses, FactoryBuildsEveryNameAndRejectsBadInput) {
  LossOptions options;
  options.counts = tiny_counts();
  auto logits = torch::randn({2, 3});
  for (const auto& name : loss_names()) {
    auto loss = make_loss(name, options);
    EXPECT_EQ(loss->name(), name);
    EXPECT_TRUE(std::isfinite(loss->forward(logits, tiny_targets()).item<double>())) << name;
  }
  EXPECT_NE(error_of([] { make_loss("hinge"); }).find("unknown loss 'hinge'"), std::string::npos);
  EXPECT_NE(error_of([] { make_loss("db_focal"); }).find("class counts"), std::string::npos);
  EXPECT_NE(error_of([&] { make_loss("bce")->forward(logits, torch::zeros({2, 4})); }).find("do not match"),
            std::string::npos);
  EXPECT_NE(error_of([&] { make_loss("cb_focal", options)->forward(torch::randn({2, 5}), torch::zeros({2, 5})); })
                .find("cover 3 classes"),
            std::string::npos);
  EXPECT_NE(error_of([] { DistributionBalancedLoss(ClassCounts{{3, 9}, 5}); }).find("exceeds"), std::string::npos);
}
