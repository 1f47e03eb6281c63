#pragma once
// Model files: everything `eval` and `predict` need in one checked file — the config, class
// names, training class counts, W, the weights and the EMA weights. A training checkpoint
// is a model file with the trainer's state added (train/checkpoint.h).
//
// W is stored once, as the tensor prompts/W; the model is built from it, and the weights
// (model/, ema/) leave out their copy of it (format 2). Format-1 files, which also kept W
// inside both sets of weights, still load: their copies must equal prompts/W.
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "cprfl/io/tensor_file.h"
#include "cprfl/model/classifier.h"
#include "cprfl/config/config.h"
#include "cprfl/data/transforms.h"

namespace cprfl {

struct ModelInfo {
  Config config;
  std::vector<std::string> class_names;
  std::vector<int64_t> class_counts;  // n_c on the training list the model was trained on
  int64_t num_train_images = 0;
  torch::Tensor prompt_embeddings;    // W [C, m] (undefined for the linear head)
};

// A model file's content, from a model and (optionally) the model holding its EMA weights.
TensorFile make_model_file(const ModelInfo& info, const torch::nn::Module& model, const torch::nn::Module* ema_model);

struct LoadedModel {
  ModelInfo info;
  std::shared_ptr<MultiLabelClassifier> model;  // in eval mode, on the CPU
  bool has_ema = false;
  bool using_ema = false;
};

// Rebuilds the model from a file. `prefer_ema` loads the EMA weights when present (the
// default, as the official recipe evaluates and keeps the EMA model).
// How two class lists differ, for messages: "the model has 4 classes, labels.txt has 5" or
// "class 2 is 'cat' in the model but 'dog' in labels.txt"; empty when they are equal.
std::string class_list_difference(const std::vector<std::string>& model_classes, const std::string& model_name,
                                  const std::vector<std::string>& other_classes, const std::string& other_name);

// The preprocessing eval and predict apply for this model: its data.* settings without
// augmentation. The one place a model file's options become an image pipeline.
TransformConfig preprocessing_of(const ModelInfo& info);

// Loads the weights stored under `prefix` ("model/" or "ema/") into a model built for the file,
// W taken from prompts/W (`prompt_embeddings`; undefined for the linear head). `what` names
// the file in errors.
void load_model_weights(torch::nn::Module& model, const TensorFile& file, const std::string& prefix,
                        const torch::Tensor& prompt_embeddings, const std::string& what);

LoadedModel load_model_file(const std::string& path, bool prefer_ema = true);
LoadedModel model_from_tensor_file(const TensorFile& file, const std::string& path, bool prefer_ema);

}  // namespace cprfl
