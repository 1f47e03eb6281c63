#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "cprfl/common/error.h"
#include "cprfl/eval/metrics.h"
#include "test_support.h"

using cprfl::testing::error_of;

using namespace cprfl;

namespace {


// A tiny probability matrix, 4 images × 3 classes, used by several tests.
//            c0    c1    c2          targets
// image 0   0.90  0.60  0.10         1 0 0
// image 1   0.80  0.20  0.70         1 0 1
// image 2   0.30  0.55  0.40         0 1 0
// image 3   0.60  0.90  0.95         0 1 0
torch::Tensor tiny_scores() {
  return torch::tensor({{0.90, 0.60, 0.10}, {0.80, 0.20, 0.70}, {0.30, 0.55, 0.40}, {0.60, 0.90, 0.95}}, torch::kDouble);
}
torch::Tensor tiny_targets() { return torch::tensor({{1, 0, 0}, {1, 0, 1}, {0, 1, 0}, {0, 1, 0}}, torch::kInt); }

MetricsOptions quiet(MetricsOptions options = {}) {
  options.warn_missing_positives = false;
  return options;
}

}  // namespace

TEST(AveragePrecision, TiedScoresFormOneThreshold) {
  // One threshold at 0.9 (tp 1, fp 1): R = 1/2, P = 1/2 -> 1/4; at 0.1 (tp 2, fp 2): R = 1, P = 1/2 -> +1/4.
  EXPECT_DOUBLE_EQ(average_precision({0.9, 0.9, 0.1, 0.1}, {1, 0, 1, 0}), 0.5);
  // Without ties: 0.8 (tp 1): R 1/2, P 1 -> 1/2; 0.6 (fp): R unchanged; 0.4 (tp 2, fp 1): R 1, P 2/3 -> +1/3.
  EXPECT_DOUBLE_EQ(average_precision({0.8, 0.6, 0.4, 0.2}, {1, 0, 1, 0}), 5.0 / 6.0);
  // Three positives, a three-way tie in the middle:
  //   0.9 (fp)              : R 0,   P 0   -> 0
  //   0.7 ×3 (tp 2, fp 2)   : R 2/3, P 2/4 -> 2/3 · 1/2 = 1/3
  //   0.2 (tp 3, fp 2)      : R 1,   P 3/5 -> 1/3 · 3/5 = 1/5      AP = 8/15
  // (Ranking the tie positives first would give 2/3·... ≠ 8/15: ties must not be split.)
  EXPECT_DOUBLE_EQ(average_precision({0.9, 0.7, 0.7, 0.7, 0.2}, {0, 1, 1, 0, 1}), 8.0 / 15.0);
  // All scores equal: one threshold, AP = precision = positives / N.
  EXPECT_DOUBLE_EQ(average_precision({0.5, 0.5, 0.5, 0.5}, {1, 0, 0, 0}), 0.25);
  // Order of the input does not matter, only the scores.
  EXPECT_DOUBLE_EQ(average_precision({0.1, 0.9, 0.1, 0.9}, {0, 1, 1, 0}), 0.5);
}

TEST(AveragePrecision, AllPositiveIsOneAndNoPositiveIsNaN) {
  EXPECT_DOUBLE_EQ(average_precision({0.1, 0.5, 0.3}, {1, 1, 1}), 1.0);
  EXPECT_TRUE(std::isnan(average_precision({0.1, 0.5, 0.3}, {0, 0, 0})));
}

TEST(Metrics, PerClassApAndMapOnTheTinyMatrix) {
  Metrics m = compute_metrics(tiny_scores(), tiny_targets(), quiet());
  EXPECT_EQ(m.num_images, 4);
  EXPECT_EQ(m.num_classes, 3);
  // c0: positives ranked 1st and 2nd -> 1.
  // c1: 0.9 (tp) R 1/2 P 1 -> 1/2; 0.6 (fp); 0.55 (tp) R 1 P 2/3 -> +1/3; AP 5/6.
  // c2: 0.95 (fp); 0.7 (tp) R 1 P 1/2 -> 1/2.
  EXPECT_DOUBLE_EQ(m.ap[0], 1.0);
  EXPECT_DOUBLE_EQ(m.ap[1], 5.0 / 6.0);
  EXPECT_DOUBLE_EQ(m.ap[2], 0.5);
  EXPECT_DOUBLE_EQ(m.map, (1.0 + 5.0 / 6.0 + 0.5) / 3.0);  // 7/9
  EXPECT_EQ(m.positives, (std::vector<std::int64_t>{2, 2, 1}));
  EXPECT_TRUE(m.classes_without_positives.empty());
  EXPECT_FALSE(m.has_groups);
}

TEST(Metrics, ThresholdMetricsOnTheTinyMatrix) {
  Metrics m = compute_metrics(tiny_scores(), tiny_targets(), quiet());
  // p >= 0.5 predicts: image 0 {c0, c1}, image 1 {c0, c2}, image 2 {c1}, image 3 {c0, c1, c2}.
  //   c0: pred 3, correct 2, gt 2 -> P 2/3, R 1
  //   c1: pred 3, correct 2, gt 2 -> P 2/3, R 1
  //   c2: pred 2, correct 1, gt 1 -> P 1/2, R 1
  // CP = (2/3 + 2/3 + 1/2) / 3 = 11/18, CR = 1, CF1 = 2·(11/18)/(11/18 + 1) = 22/29
  // OP = 5/8, OR = 5/5, OF1 = 2·(5/8)/(5/8 + 1) = 10/13
  const auto& t = m.at_threshold;
  EXPECT_DOUBLE_EQ(t.per_class_precision, 11.0 / 18.0);
  EXPECT_DOUBLE_EQ(t.per_class_recall, 1.0);
  EXPECT_NEAR(t.per_class_f1, 22.0 / 29.0, 1e-12);
  EXPECT_DOUBLE_EQ(t.overall_precision, 5.0 / 8.0);
  EXPECT_DOUBLE_EQ(t.overall_recall, 1.0);
  EXPECT_NEAR(t.overall_f1, 10.0 / 13.0, 1e-12);
  EXPECT_EQ(t.predictions, 8);
  // Default top-3 with 3 classes is no restriction.
  EXPECT_DOUBLE_EQ(m.at_top_k.per_class_precision, t.per_class_precision);
  EXPECT_DOUBLE_EQ(m.at_top_k.overall_precision, t.overall_precision);
}

TEST(Metrics, TopKKeepsEachImagesBestClassesThatPassTheThreshold) {
  MetricsOptions options = quiet();
  options.top_k = 1;
  Metrics top1 = compute_metrics(tiny_scores(), tiny_targets(), options);
  // Top-1: image 0 c0, image 1 c0, image 2 c1, image 3 c2 (all >= 0.5).
  //   c0: pred 2, correct 2 -> P 1, R 1;  c1: pred 1, correct 1 -> P 1, R 1/2;  c2: pred 1, correct 0 -> P 0, R 0
  // CP = 2/3, CR = 1/2, CF1 = 4/7;  OP = 3/4, OR = 3/5, OF1 = 2/3
  EXPECT_DOUBLE_EQ(top1.at_top_k.per_class_precision, 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(top1.at_top_k.per_class_recall, 0.5);
  EXPECT_NEAR(top1.at_top_k.per_class_f1, 4.0 / 7.0, 1e-12);
  EXPECT_DOUBLE_EQ(top1.at_top_k.overall_precision, 0.75);
  EXPECT_DOUBLE_EQ(top1.at_top_k.overall_recall, 0.6);
  EXPECT_NEAR(top1.at_top_k.overall_f1, 2.0 / 3.0, 1e-12);

  options.top_k = 2;
  Metrics top2 = compute_metrics(tiny_scores(), tiny_targets(), options);
  // Top-2: image 2's second class c2 (0.40) fails the threshold; image 3 loses c0 (0.60, 3rd).
  //   c0: pred 2, correct 2 -> P 1;  c1: pred 3, correct 2 -> P 2/3;  c2: pred 2, correct 1 -> P 1/2
  // CP = 13/18, CR = 1, OP = 5/7, OR = 1
  EXPECT_DOUBLE_EQ(top2.at_top_k.per_class_precision, 13.0 / 18.0);
  EXPECT_DOUBLE_EQ(top2.at_top_k.per_class_recall, 1.0);
  EXPECT_DOUBLE_EQ(top2.at_top_k.overall_precision, 5.0 / 7.0);
  EXPECT_DOUBLE_EQ(top2.at_top_k.overall_recall, 1.0);
  EXPECT_EQ(top2.at_top_k.predictions, 7);
}

TEST(Metrics, TopKTiesGoToTheLowerClassId) {
  MetricsOptions options = quiet();
  options.top_k = 1;
  auto scores = torch::tensor({{0.7, 0.7}}, torch::kFloat);
  Metrics first = compute_metrics(scores, torch::tensor({{1, 0}}), options);
  EXPECT_DOUBLE_EQ(first.at_top_k.overall_precision, 1.0);
  Metrics second = compute_metrics(scores, torch::tensor({{0, 1}}), options);
  EXPECT_DOUBLE_EQ(second.at_top_k.overall_precision, 0.0);
}

TEST(Metrics, LogitsGiveTheSameResultsThroughSigmoid) {
  MetricsOptions options = quiet();
  options.logits = true;
  options.top_k = 2;
  Metrics from_logits = compute_metrics(torch::logit(tiny_scores()), tiny_targets(), options);
  options.logits = false;
  Metrics from_probabilities = compute_metrics(tiny_scores(), tiny_targets(), options);
  EXPECT_NEAR(from_logits.map, from_probabilities.map, 1e-12);
  EXPECT_NEAR(from_logits.at_threshold.per_class_f1, from_probabilities.at_threshold.per_class_f1, 1e-12);
  EXPECT_NEAR(from_logits.at_top_k.overall_f1, from_probabilities.at_top_k.overall_f1, 1e-12);
  EXPECT_EQ(from_logits.at_threshold.predictions, 8);
}

TEST(Metrics, ClassWithoutPositivesIsLeftOutAndNamedInAWarning) {
  // Add c3 with no positive image; its scores stay below the threshold.
  auto scores = torch::cat({tiny_scores(), torch::full({4, 1}, 0.1, torch::kDouble)}, 1);
  auto targets = torch::cat({tiny_targets(), torch::zeros({4, 1}, torch::kInt)}, 1);
  MetricsOptions options;
  options.class_names = {"cat", "dog", "cow", "yak"};
  ::testing::internal::CaptureStderr();
  Metrics m = compute_metrics(scores, targets, options);
  std::string warning = ::testing::internal::GetCapturedStderr();
  EXPECT_NE(warning.find("warning: 1 class(es) have no positive image"), std::string::npos) << warning;
  EXPECT_NE(warning.find("3 (yak)"), std::string::npos) << warning;
  EXPECT_TRUE(std::isnan(m.ap[3]));
  EXPECT_EQ(m.classes_without_positives, (std::vector<int>{3}));
  EXPECT_DOUBLE_EQ(m.map, 7.0 / 9.0);                          // as without c3
  EXPECT_DOUBLE_EQ(m.at_threshold.per_class_precision, 11.0 / 18.0);  // c3 not in CP either
  EXPECT_DOUBLE_EQ(m.at_threshold.per_class_recall, 1.0);
  auto json = to_json(m);
  EXPECT_TRUE(json["classes"][3]["ap_pct"].is_null());
  EXPECT_EQ(json["classes_without_positives"], nlohmann::json::array({3}));
  EXPECT_NE(format_report(m).find("left out of every mean (no positive image): 3 (yak)"), std::string::npos);
}

TEST(Metrics, GroupMeansUseTrainingCounts) {
  // c3 is positive in every image (AP 1); c4 has no positive (left out).
  auto scores = torch::cat({tiny_scores(), torch::tensor({{0.2, 0.1}, {0.3, 0.1}, {0.4, 0.1}, {0.5, 0.1}}, torch::kDouble)}, 1);
  auto targets = torch::cat({tiny_targets(), torch::tensor({{1, 0}, {1, 0}, {1, 0}, {1, 0}}, torch::kInt)}, 1);
  MetricsOptions options = quiet();
  options.train_counts = {150, 50, 5, 10, 200};  // head c0 c4, medium c1, tail c2 c3 (default 100 / 20)
  Metrics m = compute_metrics(scores, targets, options);
  EXPECT_DOUBLE_EQ(m.ap[3], 1.0);
  ASSERT_TRUE(m.has_groups);
  EXPECT_DOUBLE_EQ(m.group_map[static_cast<int>(Group::kHead)], 1.0);  // c0 only; c4 left out
  EXPECT_EQ(m.group_size[static_cast<int>(Group::kHead)], 2);
  EXPECT_EQ(m.group_evaluated[static_cast<int>(Group::kHead)], 1);
  EXPECT_DOUBLE_EQ(m.group_map[static_cast<int>(Group::kMedium)], 5.0 / 6.0);
  EXPECT_DOUBLE_EQ(m.group_map[static_cast<int>(Group::kTail)], (0.5 + 1.0) / 2.0);
  EXPECT_DOUBLE_EQ(m.map, (1.0 + 5.0 / 6.0 + 0.5 + 1.0) / 4.0);

  // Other thresholds move classes between groups: head >= 40 takes c1; tail < 6 keeps only c2.
  options.group_thresholds = {40, 6};
  Metrics moved = compute_metrics(scores, targets, options);
  EXPECT_DOUBLE_EQ(moved.group_map[static_cast<int>(Group::kHead)], (1.0 + 5.0 / 6.0) / 2.0);
  EXPECT_DOUBLE_EQ(moved.group_map[static_cast<int>(Group::kMedium)], 1.0);
  EXPECT_DOUBLE_EQ(moved.group_map[static_cast<int>(Group::kTail)], 0.5);

  auto json = to_json(m);
  EXPECT_DOUBLE_EQ(json["map_pct"].get<double>(), 100.0 * m.map);
  EXPECT_DOUBLE_EQ(json["tail_map_pct"].get<double>(), 75.0);
  EXPECT_EQ(json["groups"]["head"]["classes"], 2);
  EXPECT_EQ(json["classes"][1]["group"], "medium");
  EXPECT_EQ(json["classes"][1]["train_count"], 50);
  std::string report = format_report(m);
  EXPECT_NE(report.find("mAP  total 83.33   head 100.00 (1 classes)   medium 83.33 (1 classes)   tail 75.00 (2 classes)"),
            std::string::npos)
      << report;
}

TEST(Metrics, EmptyGroupHasNoMean) {
  MetricsOptions options = quiet();
  options.train_counts = {150, 120, 110};
  Metrics m = compute_metrics(tiny_scores(), tiny_targets(), options);
  EXPECT_TRUE(std::isnan(m.group_map[static_cast<int>(Group::kTail)]));
  EXPECT_TRUE(to_json(m)["tail_map_pct"].is_null());
}

TEST(Metrics, AcceptsAnyNumericDtypes) {
  Metrics m = compute_metrics(tiny_scores().to(torch::kHalf), tiny_targets().to(torch::kBool), quiet());
  EXPECT_NEAR(m.map, 7.0 / 9.0, 1e-12);
  Metrics u = compute_metrics(tiny_scores().to(torch::kFloat), tiny_targets().to(torch::kByte), quiet());
  EXPECT_NEAR(u.map, 7.0 / 9.0, 1e-12);
}

TEST(Metrics, BadInputsAreClearErrors) {
  auto scores = tiny_scores();
  EXPECT_NE(error_of([&] { compute_metrics(scores, torch::zeros({4, 2})); })
                .find("scores have shape [4, 3] but targets have shape [4, 2]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { compute_metrics(torch::zeros({4}), torch::zeros({4})); }).find("shape [4]"), std::string::npos);
  auto half = tiny_targets().to(torch::kDouble);
  half[2][1] = 0.5;
  EXPECT_NE(error_of([&] { compute_metrics(scores, half); }).find("target of image 2, class 1 is 0.5; targets must be 0 or 1"),
            std::string::npos);
  auto nan_scores = scores.clone();
  nan_scores[1][2] = NAN;
  EXPECT_NE(error_of([&] { compute_metrics(nan_scores, tiny_targets()); }).find("score of image 1, class 2 is NaN"),
            std::string::npos);
  MetricsOptions options;
  options.train_counts = {1, 2};
  EXPECT_NE(error_of([&] { compute_metrics(scores, tiny_targets(), options); }).find("2 training counts for 3 classes"),
            std::string::npos);
  options = {};
  options.top_k = 0;
  EXPECT_NE(error_of([&] { compute_metrics(scores, tiny_targets(), options); }).find("top-k must be at least 1"),
            std::string::npos);
  options = {};
  options.threshold = 1.5;
  EXPECT_NE(error_of([&] { compute_metrics(scores, tiny_targets(), options); }).find("threshold must be a probability"),
            std::string::npos);
}

TEST(Metrics, WarnsWhenProbabilityScoresLookLikeLogits) {
  ::testing::internal::CaptureStderr();
  compute_metrics(torch::logit(tiny_scores()) * 3, tiny_targets(), quiet());
  EXPECT_NE(::testing::internal::GetCapturedStderr().find("--logits"), std::string::npos);
}
