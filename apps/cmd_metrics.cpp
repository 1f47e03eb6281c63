// cprfl metrics: AP / mAP (total, head, medium, tail) and the threshold and top-k metrics
// of a saved score matrix against a saved target matrix.
#include <iostream>
#include <limits>
#include <memory>

#include "command.h"
#include "cprfl/common/error.h"
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
  GroupThresholds groups;  // the paper's 100 / 20 (data/class_stats.h)
};

std::string shape_text(const torch::Tensor& t) {
  std::string text = "[";
  for (std::int64_t i = 0; i < t.dim(); ++i) text += (i ? ", " : "") + std::to_string(t.size(i));
  return text + "]";
}

int run_metrics(const MetricsCommandOptions& o) {
  torch::Tensor scores = read_npy(o.scores);
  torch::Tensor targets = read_npy(o.targets);
  if (scores.dim() != 2) fail_in(o.scores, "scores must be a 2-D [images, classes] array, got shape " + shape_text(scores));
  if (!scores.sizes().equals(targets.sizes())) {
    throw Error("shapes disagree: " + o.scores + " has shape " + shape_text(scores) + " but " + o.targets +
                " has shape " + shape_text(targets));
  }
  const auto num_classes = static_cast<int>(scores.size(1));

  MetricsOptions options;
  options.threshold = o.threshold;
  options.top_k = o.top_k;
  options.logits = o.logits;
  options.group_thresholds = o.groups;
  if (!o.labels.empty()) {
    options.class_names = read_labels(o.labels);
    if (static_cast<int>(options.class_names.size()) != num_classes) {
      fail_in(o.labels, "has " + std::to_string(options.class_names.size()) + " classes but " + o.scores + " has " +
                            std::to_string(num_classes) + " columns");
    }
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
  cmd->add_option("--scores", options->scores, ".npy [images, classes] scores (probabilities, or logits with --logits)")
      ->required();
  cmd->add_option("--targets", options->targets, ".npy [images, classes] ground truth, 0/1, same shape")->required();
  cmd->add_option("--train-list", options->train_list, "training list file: gives n_c and the head/medium/tail groups");
  cmd->add_option("--labels", options->labels, "labels file: class names, one row per score column");
  cmd->add_option("--threshold", options->threshold, "a class is predicted when its probability is >= this")
      ->check(between(0.0, 1.0));
  cmd->add_option("--top-k", options->top_k, "top-k metrics: only each image's k best classes may be predicted")
      ->check(at_least(1));
  cmd->add_flag("--logits", options->logits, "scores are logits: apply sigmoid before the threshold");
  cmd->add_option("--head-min", options->groups.head_min, "head classes have n_c >= this");
  cmd->add_option("--tail-below", options->groups.tail_below, "tail classes have n_c < this");
  cmd->add_option("--json", options->json, "also write every metric as JSON (percent values) to this file");
  return [options] { return run_metrics(*options); };
}

RegisterCommand registration("metrics", add_metrics);

}  // namespace
}  // namespace cprfl::app
