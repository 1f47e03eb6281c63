#pragma once
// The training loop: train one epoch, evaluate the model and its EMA on the test list
// (reported only) and on a validation split of the training list (used for model
// selection when enabled), log, checkpoint — and resume exactly from the last checkpoint.
//
// Exact resume: data order and augmentation are functions of (seed, epoch, index), dropout
// is reseeded from (seed, step) before every step, and the checkpoint holds the weights,
// EMA, optimizer state and step; so a run stopped after epoch k and resumed ends with the
// same weights as an uninterrupted one (CPU, same thread count).
//
// Out folder: last.cprfl (checkpoint of the last finished epoch: a model file plus the
// trainer's state), best.cprfl (with train.select = best), metrics.jsonl, config.yaml.
#include <string>

#include <nlohmann/json.hpp>

#include "cprfl/config/config.h"

namespace cprfl {

struct TrainOptions {
  bool resume = false;       // continue from <out_dir>/last.cprfl, using its config
  bool progress = true;      // progress bars on stderr
  int64_t epochs_this_run = 0;  // stop after this many epochs in this call (0 = run to optim.epochs)
};

struct TrainSummary {
  std::string out_dir;
  int64_t epochs_run = 0;         // in this call
  nlohmann::json last_epoch;      // the final metrics.jsonl record
};

TrainSummary train(const Config& config, const TrainOptions& options = {});

// The config stored in a run folder's checkpoint (for --resume).
Config config_of_run(const std::string& out_dir);

}  // namespace cprfl
