#pragma once
// Prediction for image files: loads a model file, prepares it for inference (folded
// BatchNorm, channels-last weights), applies the model's own preprocessing, and returns every
// class's logit and probability per image with the predicted labels. `cprfl predict` is this
// plus its command-line options and output formatting.
#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cprfl/common/precision.h"
#include "cprfl/config/model_file.h"
#include "cprfl/data/loader.h"

namespace cprfl {

struct PredictorOptions {
  bool use_ema = true;          // the EMA weights when the file has them
  std::string device = "auto";  // auto | cpu | cuda | cuda:N
  std::string precision = "auto";  // auto | fp32 | bf16 (common/precision.h)
  int batch_size = 32;
  // Threads decoding the next batch while one is predicted (0 = decode, then predict).
  // Decoding beside the compute threads measured slower on 2 cores (bench/results/perf.json,
  // infer_file): overlap only where there are spare cores.
  int workers = 0;
  BadImagePolicy on_bad_image = BadImagePolicy::error;  // skip: leave unreadable files out, with a warning
  bool progress = false;        // a progress bar on stderr
};

// Which labels count as predicted for one image.
struct LabelRule {
  double threshold = 0.5;  // a class is predicted when its probability is at least this
  int top_k = 0;           // and it is among the k most probable (0 = no limit)
};

struct ImagePrediction {
  std::string image;
  std::vector<float> logits;         // one per class, in the model's class order
  std::vector<float> probabilities;  // sigmoid(logits)
  std::vector<std::string> predicted;  // most probable first
};

// Files named, or every .jpg/.jpeg/.png under a folder (recursively, sorted). Errors name the path.
std::vector<std::string> expand_image_inputs(const std::vector<std::string>& inputs);

class Predictor {
 public:
  Predictor(const std::string& model_path, const PredictorOptions& options = {});
  // "model m.cprfl (EMA weights), 10 classes, preprocessing ..." for a header line.
  std::string description() const;
  const std::vector<std::string>& class_names() const { return loaded_.info.class_names; }
  Precision precision() const { return precision_; }
  // Predictions for the files, in order (without the files skipped as unreadable).
  std::vector<ImagePrediction> predict(const std::vector<std::string>& files, const LabelRule& rule) const;

 private:
  std::string path_;
  PredictorOptions options_;
  LoadedModel loaded_;
  torch::Device device_;
  Precision precision_;
};

}  // namespace cprfl
