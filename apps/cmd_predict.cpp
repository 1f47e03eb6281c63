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
#include "cprfl/data/transforms.h"
#include "cprfl/io/atomic_file.h"
#include "cprfl/io/model_file.h"

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
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--top-k", options->top_k, "predict at most the k most probable classes (0 = no limit)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--format", options->format, "output format")->check(CLI::IsMember({"json", "csv"}));
  cmd->add_option("--out", options->out, "write here instead of standard output");
  cmd->add_option("--batch-size", options->batch_size, "images per forward pass")->check(CLI::PositiveNumber);
  cmd->add_flag("--no-ema", options->no_ema, "use the raw weights instead of the EMA weights");
  cmd->add_option("--device", options->device, "compute device")->check(CLI::IsMember({"auto", "cpu", "cuda"}));
  return [options] {
    auto loaded = load_model_file(options->model, !options->no_ema);
    auto device = pick_device(options->device);
    loaded.model->to(device);
    const auto& config = loaded.info.config;
    const auto& names = loaded.info.class_names;
    TransformConfig transform_config;
    transform_config.image_size = static_cast<int>(config.get_int("data.image_size"));
    transform_config.train = false;
    transform_config.normalize = config.get_string("data.normalize");
    ImageTransform transform(transform_config);
    auto files = expand_inputs(options->inputs);
    const int64_t classes = static_cast<int64_t>(names.size());
    nlohmann::json results = nlohmann::json::array();
    std::ostringstream csv;
    csv << "image";
    for (const auto& name : names) csv << "," << csv_field(name + " logit") << "," << csv_field(name + " probability");
    csv << ",predicted\n";
    torch::InferenceMode inference;
    std::mt19937_64 unused_rng(0);
    for (std::size_t start = 0; start < files.size(); start += static_cast<std::size_t>(options->batch_size)) {
      std::size_t count = std::min(files.size() - start, static_cast<std::size_t>(options->batch_size));
      auto images = torch::empty({static_cast<int64_t>(count), 3, transform.output_size(), transform.output_size()});
      for (std::size_t i = 0; i < count; ++i)
        transform.apply(read_image(files[start + i]), unused_rng, images[static_cast<int64_t>(i)].data_ptr<float>());
      auto logits = loaded.model->forward(images.to(device)).to(torch::kCPU, torch::kFloat).contiguous();
      auto probabilities = torch::sigmoid(logits);
      for (std::size_t i = 0; i < count; ++i) {
        auto row_logits = logits[static_cast<int64_t>(i)];
        auto row_probabilities = probabilities[static_cast<int64_t>(i)];
        std::vector<int64_t> order(classes);
        for (int64_t c = 0; c < classes; ++c) order[c] = c;
        std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
          return row_probabilities[a].item<float>() > row_probabilities[b].item<float>();
        });
        std::vector<std::string> predicted;
        for (int64_t rank = 0; rank < classes; ++rank) {
          if (options->top_k > 0 && rank >= options->top_k) break;
          if (row_probabilities[order[rank]].item<float>() >= options->threshold) predicted.push_back(names[order[rank]]);
        }
        nlohmann::json per_class = nlohmann::json::array();
        csv << csv_field(files[start + i]);
        for (int64_t c = 0; c < classes; ++c) {
          per_class.push_back({{"class", names[c]}, {"logit", row_logits[c].item<float>()},
                               {"probability", row_probabilities[c].item<float>()}});
          csv << "," << row_logits[c].item<float>() << "," << row_probabilities[c].item<float>();
        }
        std::string joined;
        for (const auto& name : predicted) joined += (joined.empty() ? "" : ";") + name;
        csv << "," << csv_field(joined) << "\n";
        results.push_back({{"image", files[start + i]}, {"classes", per_class}, {"predicted", predicted}});
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
