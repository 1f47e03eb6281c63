#pragma once
// Training checkpoints (DIR/last.cprfl): a model file (config/model_file.h) with the trainer's
// state added — epochs done, optimizer step, best validation score, the metrics history and the
// optimizer's moments — so a run continues exactly where it stopped.
#include <torch/torch.h>

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "cprfl/config/config.h"
#include "cprfl/config/model_file.h"
#include "cprfl/io/tensor_file.h"

namespace cprfl {

inline constexpr const char* kCheckpointName = "last.cprfl";
inline constexpr const char* kBestName = "best.cprfl";

struct TrainerState {
  int64_t epochs_done = 0;
  int64_t step = 0;          // optimizer steps taken
  double best_score = -1;    // best validation mAP so far (train.select = best)
  int64_t best_epoch = -1;
  nlohmann::json history = nlohmann::json::array();  // one metrics.jsonl record per epoch
  // A run stopped mid-epoch (Ctrl-C): how far into epoch epochs_done + 1 it got, and that
  // part's summed loss and image count, so the epoch continues where it stopped.
  int64_t batches_into_epoch = 0;
  double epoch_loss_sum = 0;
  int64_t epoch_images = 0;
  int64_t world_size = 1;    // processes of the data-parallel run that wrote it (1 = one process)
};

// The checkpoint's content: the model file of (info, model, EMA), the state and the optimizer.
TensorFile make_checkpoint(const ModelInfo& info, const torch::nn::Module& model, const torch::nn::Module* ema_model,
                           const TrainerState& state, torch::optim::Optimizer& optimizer);

// Restores a checkpoint into a trainer's objects built from the same config: checks it is a
// checkpoint for these classes, loads the weights (and EMA weights when `ema_model` is given)
// and the optimizer's state, and returns the trainer state. Errors name the file.
// `labels_path` names where `class_names` came from, for the message when they differ.
TrainerState restore_checkpoint(const std::string& path, const std::vector<std::string>& class_names,
                                const std::string& labels_path, const torch::Tensor& prompt_embeddings, torch::nn::Module& model,
                                torch::nn::Module* ema_model, torch::optim::Optimizer& optimizer,
                                const torch::Device& device);

// The config stored in a run folder's checkpoint (for --resume).
Config config_of_run(const std::string& out_dir);

}  // namespace cprfl
