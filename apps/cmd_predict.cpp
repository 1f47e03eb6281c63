// cprfl predict: class scores for image files (or every image in a folder).
#include <algorithm>
#include <filesystem>
#include <iostream>
#include <memory>
#include <sstream>

#include "command.h"
#include "cprfl/common/device.h"
#include "cprfl/common/error.h"
#include "cprfl/data/image.h"
#include "cprfl/data/loader.h"
#include "cprfl/data/transforms.h"
#include "cprfl/io/atomic_file.h"
#include "cprfl/config/model_file.h"
#include "cprfl/model/inference.h"
#include "cprfl/config/config.h"

namespace cprfl::app {
namespace {

struct PredictOptions {
  std::string model;
  std::vector<std::string> inputs;
  double threshold = 0.5;
  int top_k = 0;
  std::string format = "json";
  std::string out;
  int batch_size = 32;
  // Decoding beside the 2 compute threads measured slower on 2 cores (bench/results/perf.json,
  // infer_file): overlap only where there are spare cores.
  int workers = 0;
  bool no_ema = false;
  std::string device = "auto";
};

std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs) {
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

std::string csv_field(const std::string& text) {
  if (text.find_first_of(",\"\n") == std::string::npos) return text;
  std::string quoted = "\"";
  for (char c : text) quoted += c == '"' ? std::string("\"\"") : std::string(1, c);
  return quoted + "\"";
}

Runner add_predict(CLI::App& root) {
  auto options = std::make_shared<PredictOptions>();
  CLI::App* cmd = root.add_subcommand("predict", "Predict labels for images: every class's logit and probability, then the predicted labels");
  cmd->add_option("--model", options->model, "model file or checkpoint (.cprfl)")->required();
  cmd->add_option("inputs", options->inputs, "image files or folders (searched recursively for .jpg/.jpeg/.png)")->required();
  cmd->add_option("--threshold", options->threshold, "a class is predicted when its probability is at least this")
      ->check(between(0.0, 1.0));
  cmd->add_option("--top-k", options->top_k, "predict at most the k most probable classes (0 = no limit)")
      ->check(at_least(0));
  cmd->add_option("--format", options->format, "output format")->check(CLI::IsMember({"json", "csv"}));
  cmd->add_option("--out", options->out, "write here instead of standard output");
  cmd->add_option("--batch-size", options->batch_size, "images per forward pass")->check(at_least(1));
  cmd->add_option("--workers", options->workers, "threads decoding the next batch while one is predicted (0 = decode first, then predict)")
      ->check(at_least(0));
  cmd->add_flag("--no-ema", options->no_ema, "use the raw weights instead of the EMA weights");
  cmd->add_option("--device", options->device, "compute device")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  return [options] {
    if (!options->out.empty()) check_output_path(options->out);  // before the work, not after it
    auto loaded = load_model_file(options->model, !options->no_ema);
    auto device = pick_device(options->device);
    loaded.model->to(device);
    // Folded BatchNorm and channels-last weights: same scores, faster (bench/results/perf.json).
    prepare_for_inference(*loaded.model);
    const auto& config = loaded.info.config;
    const auto& names = loaded.info.class_names;
    TransformConfig transform_config = preprocessing_of(loaded.info);
    // The header goes to stderr so that the JSON or CSV on stdout stays machine-readable.
    std::cerr << "model " << options->model << " (" << (loaded.using_ema ? "EMA weights" : "weights") << "), "
              << names.size() << " classes, preprocessing " << describe_preprocessing(transform_config) << "\n";
    auto files = expand_inputs(options->inputs);
    const int64_t classes = static_cast<int64_t>(names.size());
    nlohmann::json results = nlohmann::json::array();
    std::ostringstream csv;
    csv << "image";
    for (const auto& name : names) csv << "," << csv_field(name + " logit") << "," << csv_field(name + " probability");
    csv << ",predicted\n";
    // With --workers N the loader decodes and resizes the next batch while this one is predicted.
    ImageList list;
    list.source = "the command line";
    for (std::size_t i = 0; i < files.size(); ++i) list.records.push_back({files[i], {}, i + 1});
    auto dataset = std::make_shared<const ImageDataset>(std::move(list), "", static_cast<int>(classes), transform_config);
    LoaderOptions loader_options;
    loader_options.batch_size = options->batch_size;
    loader_options.shuffle = false;
    loader_options.workers = options->workers;
    DataLoader loader(dataset, loader_options);
    loader.start_epoch(0);
    torch::InferenceMode inference;
    while (auto batch = loader.next()) {
      auto logits = loaded.model->forward(batch->images.to(device)).to(torch::kCPU, torch::kFloat).contiguous();
      auto probabilities = torch::sigmoid(logits);
      auto logit_rows = logits.accessor<float, 2>();
      auto probability_rows = probabilities.accessor<float, 2>();
      for (int64_t row = 0; row < logits.size(0); ++row) {
        const std::string& file = files[static_cast<std::size_t>(batch->indices[static_cast<std::size_t>(row)])];
        auto row_logits = logit_rows[row];
        auto row_probabilities = probability_rows[row];
        std::vector<int64_t> order(classes);
        for (int64_t c = 0; c < classes; ++c) order[c] = c;
        std::stable_sort(order.begin(), order.end(),
                         [&](int64_t a, int64_t b) { return row_probabilities[a] > row_probabilities[b]; });
        std::vector<std::string> predicted;
        for (int64_t rank = 0; rank < classes; ++rank) {
          if (options->top_k > 0 && rank >= options->top_k) break;
          if (row_probabilities[order[rank]] >= options->threshold) predicted.push_back(names[order[rank]]);
        }
        nlohmann::json per_class = nlohmann::json::array();
        csv << csv_field(file);
        for (int64_t c = 0; c < classes; ++c) {
          per_class.push_back({{"class", names[c]}, {"logit", row_logits[c]}, {"probability", row_probabilities[c]}});
          csv << "," << row_logits[c] << "," << row_probabilities[c];
        }
        std::string joined;
        for (const auto& name : predicted) joined += (joined.empty() ? "" : ";") + name;
        csv << "," << csv_field(joined) << "\n";
        results.push_back({{"image", file}, {"classes", per_class}, {"predicted", predicted}});
      }
    }
    std::string text = options->format == "json" ? results.dump(2) + "\n" : csv.str();
    if (options->out.empty()) std::cout << text;
    else write_file_atomic(options->out, text);
    return 0;
  };
}

RegisterCommand registration("predict", add_predict);

}  // namespace
}  // namespace cprfl::app
