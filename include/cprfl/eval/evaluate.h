#pragma once
// Runs a classifier over a data loader (no gradients) and scores it with the metrics.
#include <torch/torch.h>

#include <string>

#include "cprfl/data/loader.h"
#include "cprfl/eval/metrics.h"
#include "cprfl/model/classifier.h"

namespace cprfl {

struct Predictions {
  torch::Tensor logits;   // [N, C] float32, CPU, in dataset order
  torch::Tensor targets;  // [N, C] float32
};

// Epoch 0 of the loader, in its order (use shuffle = false to keep the list order).
// `label` is shown on the progress bar (empty = no bar).
Predictions predict_all(MultiLabelClassifier& model, DataLoader& loader, const torch::Device& device,
                        const std::string& label = "");

// Metrics of logits (sigmoid applied for the threshold metrics).
Metrics score_predictions(const Predictions& predictions, MetricsOptions options);

}  // namespace cprfl
