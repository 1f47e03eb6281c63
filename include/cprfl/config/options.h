#pragma once
// The run configuration decoded once into typed options. Config keys are read here and in
// config.cpp only: everything below this area (data, model, loss, optim) takes these
// structs, and the values are checked here, with messages that name the config key.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cprfl/config/config.h"
#include "cprfl/data/class_stats.h"
#include "cprfl/data/loader.h"
#include "cprfl/data/transforms.h"
#include "cprfl/loss/losses.h"
#include "cprfl/model/build.h"
#include "cprfl/optim/optim.h"
#include "cprfl/optim/schedule.h"

namespace cprfl {

struct DataOptions {
  std::string root, train_list, test_list, labels;
  double val_fraction = 0;      // part of the training list held out for model selection
  GroupThresholds groups;       // head / medium / tail by n_c
  int workers = 2;
  BadImagePolicy on_bad_image = BadImagePolicy::error;
  TransformConfig train_transform;  // with augmentation
  TransformConfig eval_transform;   // resize + normalise only: also what eval and predict use
};

// Where W comes from for a new run (config/prompt_setup.h makes it).
struct PromptOptions {
  std::string source = "npy";   // npy | clip | randn
  std::string file;             // npy: the .npy of class embeddings
  std::string checkpoint;       // clip: a CLIP checkpoint
  std::string prompt_template;  // clip: "{}" is replaced by the class name
  int64_t randn_dim = 1024;
  double randn_norm = 13;
};

struct OptimOptions {
  OptimizerOptions optimizer;
  ScheduleOptions schedule;     // total_steps is set by the trainer (epochs × batches per epoch)
  int64_t epochs = 20;
  int64_t batch_size = 32;
  int64_t accumulate_steps = 1; // micro-batches per optimizer step
  double ema_decay = 0.998;     // 0 = no EMA
  double grad_clip = 0;         // 0 = off
  bool amp_cuda = true;         // bf16/fp16 autocast on CUDA
  std::string amp_cpu = "auto";  // bf16 autocast on CPU: auto | true | false (common/precision.h)
};

struct TrainOptions {
  uint64_t seed = 0;             // the validation split; the default of the four below
  uint64_t init_seed = 0;        // initial weights (head, random prompts)
  uint64_t order_seed = 0;       // training data order
  uint64_t augment_seed = 0;     // training augmentation
  uint64_t dropout_seed = 0;     // dropout masks
  bool diagnostics = false;      // per-epoch lr per group, weight norms, BN statistics, train mAP
  std::string device = "auto";  // auto | cpu | cuda | cuda:N
  bool tf32 = false;            // CUDA only: TF32 matrix products and convolutions
  std::string out_dir;
  bool select_best = false;     // best.cprfl by validation mAP (needs data.val_fraction > 0)
  int64_t eval_every = 1;
  bool channels_last = true;
  std::string backbone_weights; // trunk weights to start from (empty = random)
  bool freeze_bn = false;       // BatchNorm in eval mode while training (running statistics fixed)
  // Data-parallel runs (dist/): backend auto | gloo | nccl, collective timeout, bucket size,
  // overlap with backward, weight-checksum period (0 = off).
  std::string dist_backend = "auto";
  double dist_timeout_s = 300;
  double dist_bucket_mb = 25;
  bool dist_overlap = true;
  int64_t dist_check_every = 0;
};

struct RunOptions {
  DataOptions data;
  ModelOptions model;
  PromptOptions prompts;
  std::string loss_name = "asl";
  LossOptions loss;             // class counts are filled by the trainer from the data
  OptimOptions optim;
  TrainOptions train;
};

RunOptions run_options_of(const Config& config);
DataOptions data_options_of(const Config& config);
ModelOptions model_options_of(const Config& config);

// The image pipeline the data.* keys describe (train = with augmentation), checked.
TransformConfig transform_config_of(const Config& config, bool train);

// "32,64,128" → {32, 64, 128}; `field` names the key or flag in errors.
std::vector<int64_t> parse_int_list(const std::string& text, const std::string& field);

// build_model(model_options_of(config), ...): the model a configuration describes.
std::shared_ptr<MultiLabelClassifier> build_model(const Config& config, int64_t num_classes,
                                                  const torch::Tensor& prompt_embeddings);

}  // namespace cprfl
