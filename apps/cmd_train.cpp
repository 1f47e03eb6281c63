// cprfl train: trains a model from a YAML config (+ --set overrides), or resumes a run.
#include <iostream>
#include <memory>

#include "command.h"
#include "cprfl/common/error.h"
#include "cprfl/train/trainer.h"

namespace cprfl::app {
namespace {

struct TrainCommandOptions {
  std::string config;
  std::vector<std::string> sets;
  std::string resume;
  bool list_keys = false;
  bool quiet = false;
};

Runner add_train(CLI::App& root) {
  auto options = std::make_shared<TrainCommandOptions>();
  CLI::App* cmd = root.add_subcommand("train", "Train CPRFL or a baseline; evaluates every epoch and keeps checkpoints");
  cmd->add_option("--config", options->config, "YAML config (see configs/); keys not given keep their defaults");
  cmd->add_option("--set", options->sets, "override a config key, e.g. --set optim.lr=1e-4 (repeatable)");
  cmd->add_option("--resume", options->resume, "continue the run in this folder from its last checkpoint (uses its config)");
  cmd->add_flag("--list-keys", options->list_keys, "print every config key with its type, default and meaning, and exit");
  cmd->add_flag("--quiet", options->quiet, "no progress bars");
  return [options] {
    if (options->list_keys) {
      std::cout << Config::describe_schema();
      return 0;
    }
    TrainOptions train_options;
    train_options.progress = !options->quiet;
    Config config;
    if (!options->resume.empty()) {
      if (!options->config.empty() || !options->sets.empty())
        throw Error("--resume continues a run with the config stored in its checkpoint; drop --config and --set");
      config = config_of_run(options->resume);
      config.set("train.out_dir", options->resume, "--resume");
      train_options.resume = true;
    } else {
      if (!options->config.empty()) config.merge_yaml_file(options->config);
      for (const auto& assignment : options->sets) config.set_assignment(assignment, "--set");
    }
    auto summary = train(config, train_options);
    std::cout << "train: " << summary.epochs_run << " epoch(s) run; checkpoint " << summary.out_dir
              << "/last.cprfl, metrics " << summary.out_dir << "/metrics.jsonl\n";
    if (!summary.last_epoch.is_null()) std::cout << summary.last_epoch.dump() << "\n";
    return 0;
  };
}

RegisterCommand registration("train", add_train);

}  // namespace
}  // namespace cprfl::app
