#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <vector>

#include "cprfl/config/options.h"
#include "cprfl/config/prompt_setup.h"
#include "cprfl/common/error.h"
#include "cprfl/data/image.h"
#include "cprfl/data/transforms.h"
#include "cprfl/config/model_file.h"
#include "cprfl/loss/losses.h"
#include "cprfl/config/config.h"
#include "cprfl/train/trainer.h"
#include "test_support.h"
#include "tiny_dataset.h"

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

// ---- Non-default settings, against hand arithmetic ------------------------------------------
// The expected numbers below were computed outside the library, straight from the definitions
// in losses.h (σ(s) = 1/(1 + e^−s), BCE(s, y) = −[y·log σ(s) + (1 − y)·log(1 − σ(s))]).

namespace {
// σ: [[0.75, 0.75, 0.2], [0.25, 0.5, 0.02]]; y: [[1, 0, 0], [1, 0, 0]] — positives with a
// high and a low p, negatives above, near and below the clip margin.
torch::Tensor asl_logits() {
  const double ln3 = std::log(3.0), ln4 = std::log(4.0), ln49 = std::log(49.0);
  return torch::tensor({{ln3, ln3, -ln4}, {-ln3, 0.0, -ln49}}, torch::kDouble);
}
torch::Tensor asl_targets() { return torch::tensor({{1.0, 0.0, 0.0}, {1.0, 0.0, 0.0}}, torch::kDouble); }

// σ: [[0.75, 0.2, 0.5], [0.25, 0.8, 0.1]] with tiny_targets() [[1, 1, 0], [0, 0, 1]].
torch::Tensor class_aware_logits() {
  const double ln3 = std::log(3.0), ln4 = std::log(4.0), ln9 = std::log(9.0);
  return torch::tensor({{ln3, -ln4, 0.0}, {-ln3, ln4, -ln9}}, torch::kDouble);
}

void expect_matrix(const torch::Tensor& actual, const std::vector<std::vector<double>>& expected, double tolerance) {
  ASSERT_EQ(actual.dim(), 2);
  ASSERT_EQ(actual.size(0), static_cast<int64_t>(expected.size()));
  for (std::size_t i = 0; i < expected.size(); ++i) {
    ASSERT_EQ(actual.size(1), static_cast<int64_t>(expected[i].size()));
    for (std::size_t c = 0; c < expected[i].size(); ++c)
      EXPECT_NEAR(actual[i][c].item<double>(), expected[i][c], tolerance) << "(" << i << ", " << c << ")";
  }
}
}  // namespace

TEST(Losses, AsymmetricLossWithPositiveFocusingAndClip) {
  // γ+ = 1, γ− = 2, μ = 0.1. Positive: −log p·(1 − p)^γ+; negative: p_m = min(1 − p + μ, 1),
  // −log p_m·(1 − p_m)^γ−.
  //   (0,0) y=1 p=0.75: −log 0.75·0.25             = 0.2876821·0.25   = 0.0719205
  //   (1,0) y=1 p=0.25: −log 0.25·0.75             = 1.3862944·0.75   = 1.0397208
  //   (0,1) y=0 p=0.75: p_m 0.35, −log 0.35·0.65²  = 1.0498221·0.4225 = 0.4435498
  //   (0,2) y=0 p=0.2:  p_m 0.9,  −log 0.9·0.1²    = 0.1053605·0.01   = 0.0010536
  //   (1,1) y=0 p=0.5:  p_m 0.6,  −log 0.6·0.4²    = 0.5108256·0.16   = 0.0817321
  //   (1,2) y=0 p=0.02: p_m = min(1.08, 1) = 1: 0
  //   mean 0.2729961
  AsymmetricLossOptions options;
  options.gamma_pos = 1;
  options.gamma_neg = 2;
  options.clip = 0.1;
  AsymmetricLoss asl(options);
  expect_matrix(asl.elementwise(asl_logits(), asl_targets()),
                {{0.0719205, 0.4435498, 0.0010536}, {1.0397208, 0.0817321, 0.0}}, 1e-7);
  EXPECT_NEAR(asl(asl_logits(), asl_targets()).item<double>(), 0.2729961, 1e-7);
}

TEST(Losses, AsymmetricLossWithoutClip) {
  // γ+ = 1, γ− = 2, μ = 0: p_m = 1 − p. Positives as above; negatives −log(1 − p)·p²:
  //   p=0.75: 1.3862944·0.5625 = 0.7797906; p=0.2: 0.2231436·0.04 = 0.0089257;
  //   p=0.5:  0.6931472·0.25   = 0.1732868; p=0.02: 0.0202027·0.0004 = 8.0811e-6
  //   mean 0.3456087
  AsymmetricLossOptions options;
  options.gamma_pos = 1;
  options.gamma_neg = 2;
  options.clip = 0;
  AsymmetricLoss asl(options);
  expect_matrix(asl.elementwise(asl_logits(), asl_targets()),
                {{0.0719205, 0.7797906, 0.0089257}, {1.0397208, 0.1732868, 8.0811e-6}}, 1e-7);
  EXPECT_NEAR(asl(asl_logits(), asl_targets()).item<double>(), 0.3456087, 1e-7);
}

TEST(Losses, AsymmetricLossWithAllFocusingOffIsBce) {
  // γ+ = γ− = 0 and μ = 0 leave plain BCE — the identity the official ASL code documents.
  AsymmetricLossOptions options;
  options.gamma_pos = 0;
  options.gamma_neg = 0;
  options.clip = 0;
  auto each = AsymmetricLoss(options).elementwise(asl_logits(), asl_targets());
  EXPECT_TRUE(torch::allclose(each, BceLoss().elementwise(asl_logits(), asl_targets()), 1e-12, 1e-12)) << each;
}

TEST(Losses, FocalWithNonDefaultGammaAndBalance) {
  // balance·(1 − p_t)^γ·BCE with p_t = e^−BCE. BCEs: (0,0) −log 0.75 = 0.2876821,
  // (0,1) −log 0.2 = 1.6094379, (0,2) log 2 = 0.6931472, (1,0) −log 0.75, (1,1) −log 0.2,
  // (1,2) −log 0.1 = 2.3025851; 1 − p_t = 0.25, 0.8, 0.5, 0.25, 0.8, 0.9.
  //   γ = 1, balance 1: 0.0719205, 1.2875503, 0.3465736, 0.0719205, 1.2875503, 2.0723266; mean 0.8563070
  //   γ = 3, balance 2: 0.0089901, 1.6480644, 0.1732868, 0.0089901, 1.6480644, 3.3571691; mean 1.1407608
  FocalOptions one;
  one.gamma = 1;
  one.balance = 1;
  FocalLoss focal_one(one);
  expect_matrix(focal_one.elementwise(class_aware_logits(), tiny_targets()),
                {{0.0719205, 1.2875503, 0.3465736}, {0.0719205, 1.2875503, 2.0723266}}, 1e-7);
  EXPECT_NEAR(focal_one(class_aware_logits(), tiny_targets()).item<double>(), 0.8563070, 1e-7);
  FocalOptions three;
  three.gamma = 3;
  FocalLoss focal_three(three);
  EXPECT_NEAR(focal_three(class_aware_logits(), tiny_targets()).item<double>(), 1.1407608, 1e-7);
}

TEST(Losses, DistributionBalancedWithVocSettings) {
  // γ_m = 0.3, λ = 5 (the VOC-LT settings), other options default (α 0.1, β 10, κ 0.05),
  // n = [10, 2, 5], N = 20, non-zero logits.
  //   r as in DistributionBalancedRebalanceWeightsOnTinyExample: image 0 [1/6, 5/6, 1/3],
  //   image 1 [0.5, 2.5, 1]; w = σ(10(r − 0.3)) + 0.1:
  //     [[0.3086085, 1.0951952, 0.6825702], [0.9807971, 1.1, 1.0990889]]
  //   b = −log(N/n − 1)·0.05/5 = [0, −0.0219722, −0.0109861]
  //   z = s + b, then z·5 and w/5 on negatives ((0,2), (1,0), (1,1)):
  //   DB = BCE(z, y)·w:
  //     [[0.0887811, 1.7819420, 0.0909264], [0.0008056, 1.5009940, 2.5416190]], mean 1.0008447
  //   DB-Focal = 2(1 − e^−BCE)²·BCE(z, y)·w:
  //     [[0.0110976, 2.3008436, 0.0430008], [≈0, 2.9954545, 4.1264350]], mean 1.5794719
  DistributionBalancedOptions options;
  options.gamma = 0.3;
  options.lambda = 5;
  options.focal = false;
  DistributionBalancedLoss db(tiny_counts(), options);
  EXPECT_TRUE(torch::allclose(db.rebalance_weights(tiny_targets()),
                              torch::tensor({{0.3086085, 1.0951952, 0.6825702}, {0.9807971, 1.1, 1.0990889}}), 0, 1e-6))
      << db.rebalance_weights(tiny_targets());
  EXPECT_TRUE(torch::allclose(db.bias(), torch::tensor({0.0, -0.0219722, -0.0109861}), 0, 1e-7)) << db.bias();
  expect_matrix(db.elementwise(class_aware_logits(), tiny_targets()),
                {{0.0887811, 1.7819420, 0.0909264}, {0.0008056, 1.5009940, 2.5416190}}, 2e-6);
  EXPECT_NEAR(db(class_aware_logits(), tiny_targets()).item<double>(), 1.0008447, 2e-6);

  options.focal = true;
  DistributionBalancedLoss db_focal(tiny_counts(), options);
  expect_matrix(db_focal.elementwise(class_aware_logits(), tiny_targets()),
                {{0.0110976, 2.3008436, 0.0430008}, {0.0, 2.9954545, 4.1264350}}, 2e-6);
  EXPECT_NEAR(db_focal(class_aware_logits(), tiny_targets()).item<double>(), 1.5794719, 2e-6);
}

TEST(Losses, ClassBalancedFocalWithNonDefaultBeta) {
  // β = 0.99, n = [1, 10, 50]: weight_c = 0.01/(1 − 0.99^n) = [1, 0.1045829, 0.0253168]
  // (β = 0.9 would give [1, 0.1535340, 0.1005180]). Focal (γ 2, balance 2) terms times weight:
  //   [[0.0359603, 0.2154492, 0.0087741], [0.0359603, 0.2154492, 0.0944366]]
  // loss = 10·mean = 1.0100494 (β = 0.9: 1.8571557).
  ClassBalancedOptions options;
  options.beta = 0.99;
  ClassBalancedFocalLoss cb(ClassCounts{{1, 10, 50}, 60}, options);
  EXPECT_TRUE(torch::allclose(cb.class_weights(), torch::tensor({1.0f, 0.1045829f, 0.0253168f}), 0, 1e-6))
      << cb.class_weights();
  expect_matrix(cb.elementwise(class_aware_logits(), tiny_targets()),
                {{0.0359603, 0.2154492, 0.0087741}, {0.0359603, 0.2154492, 0.0944366}}, 1e-6);
  EXPECT_NEAR(cb(class_aware_logits(), tiny_targets()).item<double>(), 1.0100494, 1e-5);
  ClassBalancedFocalLoss cb_default(ClassCounts{{1, 10, 50}, 60});
  EXPECT_NEAR(cb_default(class_aware_logits(), tiny_targets()).item<double>(), 1.8571557, 1e-5);
}

TEST(Losses, FactoryPassesEveryOptionToItsLoss) {
  // make_loss hands each loss its own options (and only those): every non-default field
  // changes the loss it belongs to, and the losses it does not belong to stay put.
  const auto logits = class_aware_logits();
  const auto targets = tiny_targets();
  LossOptions defaults;
  defaults.counts = tiny_counts();
  auto value = [&](const std::string& name, const LossOptions& options) {
    return make_loss(name, options)->forward(logits, targets).item<double>();
  };
  struct Change {
    const char* field;
    std::function<void(LossOptions&)> apply;
    std::vector<std::string> owners;
  };
  const std::vector<Change> changes = {
      {"asl.gamma_pos", [](LossOptions& o) { o.asl.gamma_pos = 1; }, {"asl"}},
      {"asl.gamma_neg", [](LossOptions& o) { o.asl.gamma_neg = 2; }, {"asl"}},
      {"asl.clip", [](LossOptions& o) { o.asl.clip = 0.2; }, {"asl"}},
      {"focal.gamma", [](LossOptions& o) { o.focal.gamma = 1; }, {"focal"}},
      {"focal.balance", [](LossOptions& o) { o.focal.balance = 1; }, {"focal"}},
      {"db.gamma", [](LossOptions& o) { o.db.gamma = 0.5; }, {"db_focal", "db"}},
      {"db.lambda", [](LossOptions& o) { o.db.lambda = 5; }, {"db_focal", "db"}},
      {"db.alpha", [](LossOptions& o) { o.db.alpha = 0.3; }, {"db_focal", "db"}},
      {"db.beta", [](LossOptions& o) { o.db.beta = 3; }, {"db_focal", "db"}},
      {"db.kappa", [](LossOptions& o) { o.db.kappa = 0.5; }, {"db_focal", "db"}},
      {"db.focal_options.gamma", [](LossOptions& o) { o.db.focal_options.gamma = 1; }, {"db_focal"}},
      {"cb.beta", [](LossOptions& o) { o.cb.beta = 0.99; }, {"cb_focal"}},
      {"cb.loss_weight", [](LossOptions& o) { o.cb.loss_weight = 1; }, {"cb_focal"}},
      {"cb.focal_options.gamma", [](LossOptions& o) { o.cb.focal_options.gamma = 1; }, {"cb_focal"}},
  };
  for (const auto& name : loss_names()) {
    const double base = value(name, defaults);
    for (const auto& change : changes) {
      LossOptions changed = defaults;
      change.apply(changed);
      const bool owned = std::find(change.owners.begin(), change.owners.end(), name) != change.owners.end();
      const double now = value(name, changed);
      if (owned) EXPECT_GT(std::abs(now - base), 1e-4) << change.field << " does not reach " << name;
      else EXPECT_EQ(now, base) << change.field << " changes " << name;
    }
  }
}

// ---- Config keys → the loss the trainer uses ------------------------------------------------
// The trainer turns the loss.* keys into LossOptions (trainer.cpp, loss_options_of; not
// exported), so these tests go through train(): one batch of 8 images, learning rate 0 and no
// augmentation, so the epoch's train_loss is the loss of the saved (unchanged) model's logits
// on that batch. For every loss.* key and every loss: the train_loss equals make_loss with
// the options the key names, set by hand here; and it moves exactly when the key belongs to
// that loss.

namespace {

// Every loss.* key but loss.name: a value away from its default and the losses it belongs to.
struct KeyChange {
  std::string key;
  std::string value;
  std::set<std::string> owners;
};

const std::vector<KeyChange>& loss_key_changes() {
  static const std::vector<KeyChange> changes = {
      {"loss.gamma_pos", "1", {"asl"}},
      {"loss.gamma_neg", "2", {"asl"}},
      {"loss.clip", "0.2", {"asl"}},
      {"loss.db_gamma", "0.5", {"db_focal", "db"}},
      {"loss.db_lambda", "5", {"db_focal", "db"}},
      {"loss.cb_beta", "0.99", {"cb_focal"}},
  };
  return changes;
}

// The mapping of the schema's loss keys to the options, written out independently of the trainer.
LossOptions options_by_hand(const std::map<std::string, double>& keys, const ClassCounts& counts) {
  LossOptions options;
  options.asl.gamma_pos = keys.at("loss.gamma_pos");
  options.asl.gamma_neg = keys.at("loss.gamma_neg");
  options.asl.clip = keys.at("loss.clip");
  options.db.gamma = keys.at("loss.db_gamma");
  options.db.lambda = keys.at("loss.db_lambda");
  options.cb.beta = keys.at("loss.cb_beta");
  options.counts = counts;
  return options;
}

// 8 training images (the tiny set's pictures, with labels chosen here) in one batch.
struct LossRunFixture {
  cprfl::testing::TempDir dir;
  std::string data = dir.file("data");
  std::vector<std::vector<int>> labels = {{0, 1}, {2}, {0}, {1, 3}, {0, 2}, {1}, {0, 1, 2}, {2}};
  ClassCounts counts{{4, 4, 4, 1}, 8};
  int runs = 0;

  LossRunFixture() {
    cprfl::testing::write_tiny_dataset(data, 8, 2);
    std::string list;
    for (std::size_t i = 0; i < labels.size(); ++i) {
      list += "img/" + std::to_string(i) + ".png";
      for (int c : labels[i]) list += " " + std::to_string(c);
      list += "\n";
    }
    cprfl::testing::write_text(data + "/train.txt", list);
  }

  Config config(const std::string& loss) {
    auto config = cprfl::testing::tiny_config(data, dir.file("run" + std::to_string(runs++)));
    for (const char* assignment :
         {"model.type=linear", "optim.epochs=1", "optim.batch_size=8", "optim.lr=0", "optim.ema_decay=0",
          "data.randaugment=false", "data.hflip=false", "data.cutout_prob=0", "data.workers=0"})
      config.set_assignment(assignment, "test");
    config.set("loss.name", loss, "test");
    return config;
  }

  static double train_loss(const Config& config) {
    RunControl quiet;
    quiet.progress = false;
    return train(config, quiet).last_epoch.at("train_loss").get<double>();
  }

  torch::Tensor targets() const {
    auto y = torch::zeros({static_cast<int64_t>(labels.size()), 4});
    for (std::size_t i = 0; i < labels.size(); ++i)
      for (int c : labels[i]) y[static_cast<int64_t>(i)][c] = 1;
    return y;
  }

  // The logits the trainer's one step saw: the saved model (unchanged at lr 0) in training mode
  // (BatchNorm on batch statistics) on the un-augmented batch.
  torch::Tensor logits(const Config& config) const {
    auto loaded = load_model_file(config.get_string("train.out_dir") + "/last.cprfl", /*prefer_ema=*/false);
    ImageTransform transform(transform_config_of(config, /*train=*/true));
    auto batch = torch::empty({static_cast<int64_t>(labels.size()), 3, 32, 32});
    std::mt19937_64 rng(0);
    for (std::size_t i = 0; i < labels.size(); ++i)
      transform.apply(read_image(data + "/img/" + std::to_string(i) + ".png"), rng,
                      batch[static_cast<int64_t>(i)].data_ptr<float>());
    loaded.model->train();
    torch::NoGradGuard no_grad;
    return loaded.model->forward(batch);
  }
};

std::map<std::string, double> default_loss_keys() {
  std::map<std::string, double> keys;
  for (const auto& entry : config_schema())
    if (entry.key.rfind("loss.", 0) == 0 && entry.type == ValueType::kFloat) keys[entry.key] = std::stod(entry.default_value);
  return keys;
}

}  // namespace

TEST(LossConfig, EveryLossKeyOfTheSchemaIsCovered) {
  std::set<std::string> schema_keys, tested;
  for (const auto& entry : config_schema())
    if (entry.key.rfind("loss.", 0) == 0 && entry.key != "loss.name") schema_keys.insert(entry.key);
  for (const auto& change : loss_key_changes()) tested.insert(change.key);
  EXPECT_EQ(schema_keys, tested) << "a loss.* key was added or removed: give it a row in loss_key_changes()";
  const auto names = loss_names();
  for (const auto& entry : config_schema())
    if (entry.key == "loss.name")
      EXPECT_EQ(std::set<std::string>(entry.choices.begin(), entry.choices.end()),
                std::set<std::string>(names.begin(), names.end()));
}

TEST(LossConfig, EachKeyReachesTheLossItNamesAndNoOther) {
  LossRunFixture fixture;
  const auto targets = fixture.targets();
  torch::Tensor logits;
  for (const auto& name : loss_names()) {
    auto base_config = fixture.config(name);
    const double base = LossRunFixture::train_loss(base_config);
    if (!logits.defined()) logits = fixture.logits(base_config);
    auto expected = [&](const std::map<std::string, double>& keys) {
      return make_loss(name, options_by_hand(keys, fixture.counts))->forward(logits, targets).item<double>();
    };
    EXPECT_NEAR(base, expected(default_loss_keys()), 1e-4 * std::abs(base)) << name << " with the default keys";

    bool owns_any = false;
    for (const auto& change : loss_key_changes()) owns_any |= change.owners.count(name) > 0;
    if (!owns_any) {
      // No loss.* key belongs to it: all of them changed at once leave it as it was.
      auto config = fixture.config(name);
      for (const auto& change : loss_key_changes()) config.set(change.key, change.value, "test");
      EXPECT_EQ(LossRunFixture::train_loss(config), base) << name << " moved with keys that are not its own";
      continue;
    }
    for (const auto& change : loss_key_changes()) {
      auto config = fixture.config(name);
      config.set(change.key, change.value, "test");
      const double now = LossRunFixture::train_loss(config);
      auto keys = default_loss_keys();
      keys[change.key] = std::stod(change.value);
      EXPECT_NEAR(now, expected(keys), 1e-4 * std::abs(now)) << name << " with " << change.key << "=" << change.value;
      if (change.owners.count(name)) EXPECT_GT(std::abs(now - base), 1e-3 * std::abs(base)) << change.key << " does not reach " << name;
      else EXPECT_EQ(now, base) << change.key << " changes " << name;
    }
  }
}
