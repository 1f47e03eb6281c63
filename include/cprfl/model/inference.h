#pragma once
// The fastest exact inference form of a model on this machine, measured by bench/bench_perf
// (bench/results/perf.json): eval mode, BatchNorm folded into the convolutions, and
// channels-last convolution weights where oneDNN runs them faster. Scores stay equal to the
// eval-mode model's within rounding (tests/test_inference_opt.cpp: max |Δ| ≤ 1e-4).
// Optionally bf16 (common/precision.h): the image side's weights converted once, after
// folding, with the prompt side and the scores kept float32; its distance from the float32
// scores is measured by tests/test_precision.cpp and bench/bench_precision.cpp.
#include <torch/nn/module.h>

#include "cprfl/common/precision.h"
#include "cprfl/model/classifier.h"

namespace cprfl {

struct InferenceOptions {
  bool fold_batchnorm = true;
  bool channels_last = true;
  Precision precision = Precision::fp32;
};

// In place, and one way: afterwards the model only predicts (its trunk refuses training, and
// its state no longer matches a model file), so apply it to a model loaded just to predict.
// Call after moving the model to its device.
void prepare_for_inference(MultiLabelClassifier& model, const InferenceOptions& options = {});

// Every 4-D parameter (convolution weights) of `module` in channels-last memory order; the
// convolutions then produce channels-last outputs whatever the input's layout. Returns false,
// converting nothing, for a trunk that channels_last_is_safe refuses.
bool convert_to_channels_last(torch::nn::Module& module);

// oneDNN as built into Debian's LibTorch 1.13 crashes (SIGSEGV or abort inside convolution
// backward) on channels-last convolutions with fewer than 16 output channels: measured with
// the small trunk at widths 4, 8 and 12 from 96 px up, never at 16 or 24 or with torchvision
// ResNets. Such trunks keep the default layout (the same numbers, a little slower).
constexpr int64_t kChannelsLastMinChannels = 16;
bool channels_last_is_safe(const torch::nn::Module& module);

}  // namespace cprfl
