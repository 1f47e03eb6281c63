// cprfl train: trains a model from a YAML config (+ --set overrides), or resumes a run.
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>

#include "command.h"
#include "cprfl/common/error.h"
#include "cprfl/dist/environment.h"
#include "cprfl/dist/launcher.h"
#include "cprfl/train/trainer.h"

namespace cprfl::app {
namespace {

struct TrainCommandOptions {
  std::string config;
  std::vector<std::string> sets;
  std::string resume;
  bool list_keys = false;
  bool quiet = false;
  bool json = false;
  int64_t epochs_this_run = 0;
  int nproc = 0;
};

Runner add_train(CLI::App& root) {
  auto options = std::make_shared<TrainCommandOptions>();
  CLI::App* cmd = root.add_subcommand("train", "Train CPRFL or a baseline; evaluates every epoch and keeps checkpoints");
  cmd->add_option("--config", options->config, "YAML config (see configs/); keys not given keep their defaults");
  cmd->add_option("--set", options->sets, "override a config key, e.g. --set optim.lr=1e-4 (repeatable)");
  cmd->add_option("--resume", options->resume,
                  "continue the run in this folder (or from this last.cprfl) from its last checkpoint, with its stored config (--set may override keys)");
  cmd->add_flag("--list-keys", options->list_keys, "print every config key with its type, default and meaning, and exit");
  cmd->add_option("--epochs-this-run", options->epochs_this_run,
                  "stop after this many epochs (0 = all); continue later with --resume")->check(at_least(0));
  cmd->add_flag("--quiet", options->quiet, "no progress bars (the line per evaluated epoch stays)");
  cmd->add_option("--nproc", options->nproc,
                  "data-parallel on this machine: start N worker processes (torchrun's environment, a free loopback "
                  "port); optim.batch_size is per process")
      ->check(at_least(1));
  cmd->add_flag("--json", options->json,
                "print the result as one JSON object on stdout (out_dir, epochs_run, step, interrupted, last_epoch)");
  return [options] {
    if (options->list_keys) {
      std::cout << Config::describe_schema();
      return 0;
    }
    if (options->nproc > 0) {
      if (std::getenv("WORLD_SIZE") != nullptr)
        throw Error("--nproc starts its own worker processes; it cannot run under torchrun or another launcher "
                    "(WORLD_SIZE is set)");
      return launch_workers(options->nproc, without_nproc(own_command_line()));
    }
    const bool main_process = read_dist_environment().is_main();  // only rank 0 reports
    RunControl train_options;
    train_options.progress = !options->quiet;
    train_options.epochs_this_run = options->epochs_this_run;
    Config config;
    if (!options->resume.empty()) {
      if (!options->config.empty())
        throw Error("--resume continues a run with the config stored in its checkpoint; drop --config (use --set to change a key)");
      // The run folder, or its checkpoint file (DIR/last.cprfl) given in its place.
      std::string run_dir = options->resume;
      if (std::filesystem::is_regular_file(run_dir)) run_dir = std::filesystem::path(run_dir).parent_path().string();
      if (run_dir.empty()) run_dir = ".";
      config = config_of_run(run_dir);
      config.set("train.out_dir", run_dir, "--resume");
      for (const auto& assignment : options->sets) config.set_assignment(assignment, "--set");
      train_options.resume = true;
    } else {
      if (!options->config.empty()) config.merge_yaml_file(options->config);
      for (const auto& assignment : options->sets) config.set_assignment(assignment, "--set");
    }
    auto summary = train(config, train_options);
    if (!main_process) return summary.interrupted ? 130 : 0;
    if (options->json) {
      std::cout << nlohmann::json{{"out_dir", summary.out_dir},       {"epochs_run", summary.epochs_run},
                                  {"step", summary.step},             {"interrupted", summary.interrupted},
                                  {"checkpoint", summary.out_dir + "/last.cprfl"}, {"last_epoch", summary.last_epoch}}
                       .dump()
                << "\n";
    } else {
      std::cout << "train: " << summary.epochs_run << " epoch(s) run, " << summary.step << " steps in all; checkpoint "
                << summary.out_dir << "/last.cprfl, metrics " << summary.out_dir << "/metrics.jsonl\n";
    }
    return summary.interrupted ? 130 : 0;  // 128 + SIGINT, as a shell reports a Ctrl-C
  };
}

RegisterCommand registration("train", add_train);

}  // namespace
}  // namespace cprfl::app
