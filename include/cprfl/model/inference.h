#pragma once
// The fastest exact inference form of a model on this machine, measured by bench/bench_perf
// (bench/results/perf.json): eval mode, BatchNorm folded into the convolutions, and
// channels-last convolution weights where oneDNN runs them faster. Scores stay equal to the
// eval-mode model's within rounding (tests/test_inference_opt.cpp: max |Δ| ≤ 1e-4).
#include <torch/nn/module.h>

#include "cprfl/model/classifier.h"

namespace cprfl {

struct InferenceOptions {
  bool fold_batchnorm = true;
  bool channels_last = true;
};

// In place, and one way: afterwards the model only predicts (its trunk refuses training, and
// its state no longer matches a model file), so apply it to a model loaded just to predict.
// Call after moving the model to its device.
void prepare_for_inference(MultiLabelClassifier& model, const InferenceOptions& options = {});

// Every 4-D parameter (convolution weights) of `module` in channels-last memory order; the
// convolutions then produce channels-last outputs whatever the input's layout.
void convert_to_channels_last(torch::nn::Module& module);

}  // namespace cprfl
