#include "cprfl/eval/predictor.h"

#include <algorithm>
#include <filesystem>

#include "cprfl/common/device.h"
#include "cprfl/common/progress.h"
#include "cprfl/common/error.h"
#include "cprfl/data/loader.h"
#include "cprfl/data/transforms.h"
#include "cprfl/model/inference.h"

namespace cprfl {

std::vector<std::string> expand_image_inputs(const std::vector<std::string>& inputs) {
  std::vector<std::string> files;
  for (const auto& input : inputs) {
    std::error_code error;
    if (std::filesystem::is_directory(input, error)) {
      std::vector<std::string> found;
      for (const auto& entry : std::filesystem::recursive_directory_iterator(input)) {
        if (!entry.is_regular_file()) continue;
        std::string ext = entry.path().extension().string();
        std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
        if (ext == ".jpg" || ext == ".jpeg" || ext == ".png") found.push_back(entry.path().string());
      }
      std::sort(found.begin(), found.end());
      if (found.empty()) fail_in(input, "no .jpg, .jpeg or .png files in this folder");
      files.insert(files.end(), found.begin(), found.end());
    } else if (std::filesystem::exists(input, error)) {
      files.push_back(input);
    } else {
      fail_in(input, "no such file or folder");
    }
  }
  return files;
}

Predictor::Predictor(const std::string& model_path, const PredictorOptions& options)
    : path_(model_path), options_(options), loaded_(load_model_file(model_path, options.use_ema)),
      device_(pick_device(options.device)), precision_(inference_precision(options.precision, device_)) {
  loaded_.model->to(device_);
  if (device_.is_cuda()) allow_cuda_tf32(false);  // float32 scores match the CPU's (README, CUDA)
  // Folded BatchNorm and channels-last weights: same scores, faster (bench/results/perf.json).
  InferenceOptions inference;
  inference.precision = precision_;
  prepare_for_inference(*loaded_.model, inference);
}

std::string Predictor::description() const {
  return "model " + path_ + " (" + (loaded_.using_ema ? "EMA weights" : "weights") + "), " +
         std::to_string(class_names().size()) + " classes, " + precision_name(precision_) + ", preprocessing " +
         describe_preprocessing(preprocessing_of(loaded_.info));
}

std::vector<ImagePrediction> Predictor::predict(const std::vector<std::string>& files, const LabelRule& rule) const {
  const auto& names = class_names();
  const int64_t classes = static_cast<int64_t>(names.size());
  ImageList list;
  list.source = "the command line";
  for (std::size_t i = 0; i < files.size(); ++i) list.records.push_back({files[i], {}, i + 1});
  auto dataset = std::make_shared<const ImageDataset>(std::move(list), "", static_cast<int>(classes),
                                                      preprocessing_of(loaded_.info));
  LoaderOptions loader_options;
  loader_options.batch_size = options_.batch_size;
  loader_options.shuffle = false;
  loader_options.workers = options_.workers;
  loader_options.bad_images = options_.on_bad_image;
  loader_options.pin_memory = device_.is_cuda();
  DataLoader loader(dataset, loader_options);
  loader.start_epoch(0);
  std::vector<ImagePrediction> out(files.size());
  std::unique_ptr<ProgressBar> bar;
  if (options_.progress) bar = std::make_unique<ProgressBar>("predict", static_cast<int64_t>(files.size()), "img");
  int64_t seen = 0;
  torch::InferenceMode inference;
  while (auto batch = loader.next()) {
    seen = batch->position * options_.batch_size + static_cast<int64_t>(loader_options.batch_size);
    if (bar) bar->update(std::min<int64_t>(seen, static_cast<int64_t>(files.size())));
    auto logits = loaded_.model->forward(to_device(batch->images, device_)).to(torch::kCPU, torch::kFloat).contiguous();
    auto probabilities = torch::sigmoid(logits);
    auto logit_rows = logits.accessor<float, 2>();
    auto probability_rows = probabilities.accessor<float, 2>();
    for (int64_t row = 0; row < logits.size(0); ++row) {
      const std::size_t index = static_cast<std::size_t>(batch->indices[static_cast<std::size_t>(row)]);
      ImagePrediction& prediction = out[index];
      prediction.image = files[index];
      for (int64_t c = 0; c < classes; ++c) {
        prediction.logits.push_back(logit_rows[row][c]);
        prediction.probabilities.push_back(probability_rows[row][c]);
      }
      std::vector<int64_t> order(classes);
      for (int64_t c = 0; c < classes; ++c) order[c] = c;
      std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
        return prediction.probabilities[a] > prediction.probabilities[b];
      });
      for (int64_t rank = 0; rank < classes; ++rank) {
        if (rule.top_k > 0 && rank >= rule.top_k) break;
        if (prediction.probabilities[order[rank]] >= rule.threshold) prediction.predicted.push_back(names[order[rank]]);
      }
    }
  }
  if (bar) bar->finish();
  // Files the loader skipped (policy skip) have no prediction.
  out.erase(std::remove_if(out.begin(), out.end(), [](const ImagePrediction& p) { return p.image.empty(); }), out.end());
  return out;
}

}  // namespace cprfl
