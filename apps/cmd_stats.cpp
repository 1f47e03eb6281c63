// cprfl stats: per-class training counts and the head/medium/tail split of a list file.
#include <iostream>
#include <memory>

#include "command.h"
#include "cprfl/data/class_stats.h"
#include "cprfl/io/atomic_file.h"

namespace cprfl::app {
namespace {

struct StatsOptions {
  std::string list;
  std::string labels;
  std::string json;
  GroupThresholds groups;  // the paper's 100 / 20 (data/class_stats.h)
};

Runner add_stats(CLI::App& root) {
  auto options = std::make_shared<StatsOptions>();
  CLI::App* cmd = root.add_subcommand("stats", "Class counts n_c, N and the head/medium/tail groups of a training list");
  cmd->add_option("--list", options->list, "list file: `path id id …` per line")->required();
  cmd->add_option("--labels", options->labels, "labels file: one class name per line")->required();
  cmd->add_option("--json", options->json, "also write the statistics as JSON to this file (with the list and labels read)");
  cmd->add_option("--head-min", options->groups.head_min, "head classes have n_c >= this");
  cmd->add_option("--tail-below", options->groups.tail_below, "tail classes have n_c < this");
  return [options] {
    auto names = read_labels(options->labels);
    auto list = read_image_list(options->list, static_cast<int>(names.size()));
    auto stats = compute_class_stats(list, names, options->groups);
    std::cout << format_table(stats);
    if (!options->json.empty()) {
      // The same key names as `cprfl eval --json`: "list", "labels", and per class "train_count".
      nlohmann::json json = to_json(stats);
      json["list"] = options->list;
      json["labels"] = options->labels;
      write_file_atomic(options->json, json.dump(2) + "\n");
    }
    return 0;
  };
}

RegisterCommand registration("stats", add_stats);

}  // namespace
}  // namespace cprfl::app
