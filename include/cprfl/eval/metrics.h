#pragma once
// The long-tail multi-label metrics (docs/METHOD.md §8), from a score matrix and a 0/1 target
// matrix, both [N images, C classes].
//
// AP per class is scikit-learn's average_precision_score: images sorted by score, highest
// first; equal scores form ONE threshold, so precision P_n and recall R_n are taken only
// after each distinct score value; AP = Σ_n (R_n − R_{n−1}) · P_n with R_0 = 0.
// A class with no positive image in the evaluated set has no AP: it is NaN in `ap`,
// listed in `classes_without_positives`, named in a warning, and left out of every mean
// (mAP, group mAP, CP, CR). A class whose every image is positive has AP 1.
//
// Threshold metrics. Scores are probabilities unless `logits` is set, in which case
// sigmoid(score) is compared with the threshold. Class c is predicted for an image when its
// probability is >= threshold. Per class: pred_c (images predicted c), correct_c (predicted
// and positive), gt_c (positive).
//   CP = mean_c correct_c / pred_c   (a class never predicted has precision 0)
//   CR = mean_c correct_c / gt_c
//   (both means over the classes with at least one positive, as for mAP)
//   OP = Σ correct_c / Σ pred_c,  OR = Σ correct_c / Σ gt_c  (sums over every class)
//   CF1 = 2·CP·CR / (CP + CR),  OF1 = 2·OP·OR / (OP + OR)  (0 when both are 0)
// Top-k: the same, but an image predicts only among its k highest-scoring classes (ties
// broken by the lower class id), and each of those must still pass the threshold — so
// top-k never predicts more than the plain threshold does. k >= C equals no restriction.
//
// Groups: with training counts n_c, every class is head / medium / tail (class_stats.h) and
// each group's mAP is the mean AP of its classes that have positives (NaN if none).
//
// Units: the struct holds fractions in [0, 1]; the JSON and the printed report use percent,
// and every JSON key of a percentage ends in "_pct".
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/types.h>

#include "cprfl/data/class_stats.h"

namespace cprfl {

struct MetricsOptions {
  double threshold = 0.5;  // on probabilities
  int top_k = 3;
  bool logits = false;     // scores are logits: apply sigmoid before the threshold
  // Optional: n_c per class from the training list (size C), enabling group mAP.
  std::vector<std::int64_t> train_counts;
  GroupThresholds group_thresholds;
  // Optional: class names (size C) for the report and the warning.
  std::vector<std::string> class_names;
  bool warn_missing_positives = true;  // warn (stderr) about classes left out
};

struct ThresholdMetrics {
  double overall_precision = 0, overall_recall = 0, overall_f1 = 0;        // OP, OR, OF1
  double per_class_precision = 0, per_class_recall = 0, per_class_f1 = 0;  // CP, CR, CF1
  std::int64_t predictions = 0;                                           // Σ pred_c
};

struct Metrics {
  std::int64_t num_images = 0;
  std::int64_t num_classes = 0;
  std::vector<double> ap;                   // per class, NaN when the class has no positive
  std::vector<std::int64_t> positives;      // per class: positive images in the evaluated set
  std::vector<int> classes_without_positives;
  double map = 0;                           // mean AP over classes with positives (NaN if none)

  bool has_groups = false;
  std::vector<std::int64_t> train_counts;   // n_c, when given
  std::vector<Group> groups;
  GroupThresholds group_thresholds;
  double group_map[3] = {0, 0, 0};          // indexed by Group; NaN for a group without evaluable classes
  int group_size[3] = {0, 0, 0};            // classes in the group (all of them)
  int group_evaluated[3] = {0, 0, 0};       // of which have positives

  double threshold = 0.5;
  int top_k = 3;
  bool logits = false;
  ThresholdMetrics at_threshold;
  ThresholdMetrics at_top_k;
  std::vector<std::string> class_names;     // empty, or size C
};

// AP of one class exactly as scikit-learn computes it; NaN if `targets` has no positive.
// Sizes must agree; targets are 0/1.
double average_precision(const std::vector<double>& scores, const std::vector<double>& targets);

// Everything above. scores and targets: [N, C], any numeric dtype (targets must be 0/1,
// scores must not be NaN); any device. A mismatch is a cprfl::Error naming both shapes.
Metrics compute_metrics(const torch::Tensor& scores, const torch::Tensor& targets, const MetricsOptions& options = {});

nlohmann::json to_json(const Metrics& metrics);
// Total/head/medium/tail mAP, the threshold and top-k metrics, then a per-class table.
std::string format_report(const Metrics& metrics);

// What a saved score matrix holds, in a record beside it: `eval --save-scores S.npy` writes
// S.npy.json and `metrics --scores S.npy` follows it. JSON keys: "scores" ("logits" or
// "probabilities"), "shape" [images, classes], "classes" (names in column order), "targets"
// (the targets file's name, in the same folder), and where the scores came from with the
// keys of `eval --json`: "model", "ema", "list", "root".
struct ScoresRecord {
  bool logits = true;
  std::vector<std::int64_t> shape;
  std::vector<std::string> classes;
  std::string targets;
  std::string model, list, root;
  bool ema = false;
};
std::string scores_record_path(const std::string& scores_path);  // scores_path + ".json"
nlohmann::json to_json(const ScoresRecord& record);
// Reads a record; errors name `path` and the key at fault.
ScoresRecord read_scores_record(const std::string& path);

}  // namespace cprfl
