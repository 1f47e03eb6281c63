// cprfl metrics: AP / mAP (total, head, medium, tail) and the threshold and top-k metrics
// of a saved score matrix against a saved target matrix.
#include <filesystem>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>

#include "command.h"
#include "cprfl/common/error.h"
#include "cprfl/config/model_file.h"
#include "cprfl/data/class_stats.h"
#include "cprfl/data/list_file.h"
#include "cprfl/eval/metrics.h"
#include "cprfl/io/atomic_file.h"
#include "cprfl/io/npy.h"

namespace cprfl::app {
namespace {

struct MetricsCommandOptions {
  std::string scores;
  std::string targets;
  std::string train_list;
  std::string labels;
  std::string json;
  double threshold = 0.5;
  int top_k = 3;
  bool logits = false;
  bool probabilities = false;
  GroupThresholds groups;  // the paper's 100 / 20 (data/class_stats.h)
};

std::string shape_text(c10::IntArrayRef sizes) {
  std::string text = "[";
  for (std::size_t i = 0; i < sizes.size(); ++i) text += (i ? ", " : "") + std::to_string(sizes[i]);
  return text + "]";
}
std::string shape_text(const torch::Tensor& t) { return shape_text(t.sizes()); }

// What the scores are: the record beside them (`eval --save-scores` writes it) decides, and a
// flag that says otherwise is an error naming both; without a record, the flags decide.
bool scores_are_logits(const MetricsCommandOptions& o, const std::optional<ScoresRecord>& record,
                       const std::string& record_path) {
  if (!record) return o.logits;
  const char* recorded = record->logits ? "logits" : "probabilities";
  if ((o.logits && !record->logits) || (o.probabilities && record->logits)) {
    throw Error(std::string(o.logits ? "--logits" : "--probabilities") + " contradicts " + record_path +
                ", which records \"scores\": \"" + recorded + "\"; drop the flag or fix the record");
  }
  return record->logits;
}

int run_metrics(const MetricsCommandOptions& o) {
  const std::string record_path = scores_record_path(o.scores);
  std::optional<ScoresRecord> record;
  if (std::filesystem::is_regular_file(record_path)) record = read_scores_record(record_path);
  std::string targets_path = o.targets;
  if (targets_path.empty()) {
    if (!record || record->targets.empty())
      throw Error("--targets is required: " + o.scores + " has no record (" + record_path + ") naming its targets");
    targets_path = (std::filesystem::path(o.scores).parent_path() / record->targets).string();
  }
  torch::Tensor scores = read_npy(o.scores);
  torch::Tensor targets = read_npy(targets_path);
  if (scores.dim() != 2) fail_in(o.scores, "scores must be a 2-D [images, classes] array, got shape " + shape_text(scores));
  if (!scores.sizes().equals(targets.sizes())) {
    throw Error("shapes disagree: " + o.scores + " has shape " + shape_text(scores) + " but " + targets_path +
                " has shape " + shape_text(targets));
  }
  const auto num_classes = static_cast<int>(scores.size(1));
  if (record && !record->shape.empty() && !scores.sizes().equals(record->shape)) {
    throw Error(record_path + " describes scores of shape " + shape_text(record->shape) + " but " +
                o.scores + " has shape " + shape_text(scores) + "; the record is not this file's");
  }

  MetricsOptions options;
  options.threshold = o.threshold;
  options.top_k = o.top_k == 0 ? num_classes : o.top_k;  // 0 = no limit
  options.logits = scores_are_logits(o, record, record_path);
  options.group_thresholds = o.groups;
  if (record) {
    std::cout << "scores " << o.scores << ": " << (options.logits ? "logits" : "probabilities") << " (recorded in "
              << record_path << (record->model.empty() ? "" : ", from model " + record->model) << ")\n";
  }
  if (!o.labels.empty()) {
    options.class_names = read_labels(o.labels);
    if (static_cast<int>(options.class_names.size()) != num_classes) {
      fail_in(o.labels, "has " + std::to_string(options.class_names.size()) + " classes but " + o.scores + " has " +
                            std::to_string(num_classes) + " columns");
    }
  }
  if (record && !record->classes.empty()) {
    if (options.class_names.empty()) options.class_names = record->classes;
    else if (options.class_names != record->classes)
      throw Error(o.labels + ": its classes differ from those " + record_path + " records (" +
                  class_list_difference(record->classes, record_path, options.class_names, o.labels) + ")");
  }
  if (!o.train_list.empty()) {
    // Ids are checked against the score columns (not a labels file) by compute_class_stats,
    // which names the line at fault.
    ImageList list = read_image_list(o.train_list, std::numeric_limits<int>::max());
    std::vector<std::string> names = options.class_names;
    if (names.empty())
      for (int c = 0; c < num_classes; ++c) names.push_back(std::to_string(c));
    options.train_counts = compute_class_stats(list, names, options.group_thresholds).counts;
  }

  Metrics metrics = compute_metrics(scores, targets, options);
  std::cout << format_report(metrics);
  if (!o.json.empty()) write_file_atomic(o.json, to_json(metrics).dump(2) + "\n");
  return 0;
}

Runner add_metrics(CLI::App& root) {
  auto options = std::make_shared<MetricsCommandOptions>();
  CLI::App* cmd = root.add_subcommand("metrics", "AP, mAP (total/head/medium/tail), CP/CR/CF1/OP/OR/OF1 and top-k of saved scores");
  cmd->add_option("--scores", options->scores,
                  ".npy [images, classes] scores; what they are (logits or probabilities) comes from FILE.json beside "
                  "them when there is one (eval --save-scores writes it), else from --logits")
      ->required();
  cmd->add_option("--targets", options->targets,
                  ".npy [images, classes] ground truth, 0/1, same shape (default: the targets the scores' record names)");
  cmd->add_option("--train-list", options->train_list, "training list file: gives n_c and the head/medium/tail groups");
  cmd->add_option("--labels", options->labels, "labels file: class names, one row per score column");
  cmd->add_option("--threshold", options->threshold, "a class is predicted when its probability is >= this")
      ->check(between(0.0, 1.0));
  cmd->add_option("--top-k", options->top_k,
                  "top-k metrics: only each image's k most probable classes may be predicted (0 = no limit)")
      ->check(at_least(0));
  auto* logits = cmd->add_flag("--logits", options->logits,
                               "scores are logits: apply sigmoid before the threshold (an error if their record says otherwise)");
  cmd->add_flag("--probabilities", options->probabilities,
                "scores are probabilities (the default without a record; an error if their record says logits)")
      ->excludes(logits);
  cmd->add_option("--head-min", options->groups.head_min, "head classes have n_c >= this");
  cmd->add_option("--tail-below", options->groups.tail_below, "tail classes have n_c < this");
  cmd->add_option("--json", options->json, "also write every metric as JSON (percent values) to this file");
  return [options] { return run_metrics(*options); };
}

RegisterCommand registration("metrics", add_metrics);

}  // namespace
}  // namespace cprfl::app
