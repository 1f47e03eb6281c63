#pragma once
// Training: a Trainer holds one run's objects — data loaders, model, EMA copy, loss, optimizer
// and schedule, all built from the typed options a Config decodes to — and does the three
// things a run is made of: step() (one optimizer step on a batch), run_epoch() and
// evaluate(). train() drives it over the epochs, checkpointing after each (train/checkpoint.h).
//
// Exact resume: data order and augmentation are functions of (seed, epoch, index), dropout
// is reseeded from (seed, step) before every step, and the checkpoint holds the weights,
// EMA, optimizer state and step; so a run stopped after epoch k and resumed ends with the
// same weights as an uninterrupted one (CPU, same thread count).
//
// Out folder: last.cprfl (checkpoint of the last finished epoch: a model file plus the
// trainer's state), best.cprfl (with train.select = best), metrics.jsonl, config.yaml.
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cprfl/config/config.h"
#include "cprfl/config/model_file.h"
#include "cprfl/config/options.h"
#include "cprfl/data/list_file.h"
#include "cprfl/data/loader.h"
#include "cprfl/dist/communicator.h"
#include "cprfl/dist/gradient_sync.h"
#include "cprfl/eval/evaluate.h"
#include "cprfl/eval/metrics.h"
#include "cprfl/loss/losses.h"
#include "cprfl/optim/optim.h"
#include "cprfl/optim/schedule.h"
#include "cprfl/train/accumulate.h"
#include "cprfl/train/checkpoint.h"

namespace cprfl {

// The lists a run trains and evaluates on.
struct TrainingData {
  std::vector<std::string> class_names;
  ImageList train;   // the part of the training list trained on
  ImageList val;     // held out for model selection (empty unless data.val_fraction > 0)
  ImageList test;    // evaluated and reported, never used for selection
};

// Reads the labels file and both lists, and splits the validation part off (seeded, fixed).
TrainingData load_training_data(const DataOptions& data, uint64_t seed);

class Trainer {
 public:
  // Builds everything from `config` (decoded once) on `data`; a fresh model, seeded by train.init_seed.
  // With a communicator this process is one rank of a data-parallel run (dist/): it trains on
  // its shard of every epoch, starts from rank 0's weights, averages gradients with the other
  // ranks during backward, and evaluates its part of each list, the scores gathered on all.
  Trainer(const Config& config, TrainingData data, Communicator* communicator = nullptr);

  // One optimizer step on a batch: schedule, forward and backward in optim.accumulate_steps
  // micro-batches (bf16 autocast when enabled), gradient clipping, optimizer step, EMA update.
  // Returns the batch loss (detached, on the device; not synchronised). `hook` is told as
  // each part ends (train/accumulate.h).
  torch::Tensor step(const torch::Tensor& images, const torch::Tensor& targets, const StepHook& hook = nullptr);

  // Trains epoch state().epochs_done + 1 (from where a stopped run left it); returns its
  // metrics.jsonl record (loss, lr, timing). When `stop_requested` turns true the epoch stops
  // after the step in progress: the record then has "interrupted": true and the state says
  // how far the epoch got (a checkpoint taken now continues there).
  nlohmann::json run_epoch(bool progress, const std::function<bool()>& stop_requested = nullptr);

  // Scores the model (and its EMA) on the test list, and the selected model on the validation
  // part; adds "test", "test_ema" and "val" to `record` (and, with train.diagnostics, "train_eval" and
  // "diagnostics"). Returns true when this is the best validation score so far (train.select = best).
  bool evaluate(nlohmann::json& record);

  // Checkpoint and model-file contents of the current state.
  TensorFile checkpoint();
  TensorFile model_file();
  // Continues from a checkpoint written by a run with the same config.
  void restore(const std::string& checkpoint_path);

  const RunOptions& options() const { return options_; }
  // `local` on this rank, or on any rank of a data-parallel run (a collective: all ranks call it).
  bool any_rank(bool local);
  // Whether steps run under bf16 autocast (optim.amp on CUDA, optim.amp_cpu resolved on the CPU).
  bool autocast() const { return autocast_; }
  TrainerState& state() { return state_; }
  DataLoader& train_loader() { return *train_loader_; }
  MultiLabelClassifier& model() { return *model_; }

 private:
  Config config_;
  RunOptions options_;
  TrainingData data_;
  torch::Device device_;
  Communicator* communicator_ = nullptr;
  std::unique_ptr<GradientSync> gradient_sync_;
  bool autocast_ = false;
  ModelInfo info_;
  std::unique_ptr<DataLoader> train_loader_, test_loader_, val_loader_, train_eval_loader_;
  std::shared_ptr<MultiLabelClassifier> model_, ema_model_;
  std::unique_ptr<WeightEma> ema_;
  std::unique_ptr<MultiLabelLoss> loss_;
  OptimizerBundle optimizer_;
  std::unique_ptr<LrSchedule> schedule_;
  MetricsOptions metric_options_;
  TrainerState state_;

  Predictions predict_on_all_ranks(MultiLabelClassifier& model, DataLoader& loader);
  void check_replicas_agree();           // train.dist_check_every
  void freeze_batchnorm_statistics();    // train.freeze_bn
};

// How train() is run (not part of the config).
struct RunControl {
  bool resume = false;          // continue from <out_dir>/last.cprfl, using its config
  bool progress = true;         // progress bars on stderr
  bool epoch_lines = true;      // a line per evaluated epoch on stderr (test mAP)
  int64_t epochs_this_run = 0;  // stop after this many epochs in this call (0 = run to optim.epochs)
};

struct TrainSummary {
  std::string out_dir;
  int64_t epochs_run = 0;         // in this call
  nlohmann::json last_epoch;      // the final metrics.jsonl record
  bool interrupted = false;       // stopped by SIGINT/SIGTERM; last.cprfl continues it
  int64_t step = 0;               // optimizer steps taken in all
};

// Ctrl-C or SIGTERM stops the run after the step in progress and writes a checkpoint of it;
// the summary then says `interrupted` (`cprfl train` exits 130).
TrainSummary train(const Config& config, const RunControl& control = {});

}  // namespace cprfl
