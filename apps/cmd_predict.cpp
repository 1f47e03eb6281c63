// cprfl predict: class scores for image files (or every image in a folder).
#include <charconv>
#include <cstdlib>
#include <iostream>
#include <unistd.h>
#include <memory>
#include <sstream>

#include "command.h"
#include "cprfl/eval/predictor.h"
#include "cprfl/data/loader.h"
#include "cprfl/io/atomic_file.h"

namespace cprfl::app {
namespace {

struct PredictOptions {
  std::string model;
  std::vector<std::string> inputs;
  LabelRule rule;
  std::string format = "json";
  std::string out;
  PredictorOptions predictor;
  std::string on_bad_image = "error";
  bool no_ema = false;
};

// A float as the shortest decimal that reads back as the same float (0.6429469, not
// 0.6429468989372253): every digit shown carries information.
double shortest(float value) {
  char text[32];
  auto end = std::to_chars(text, text + sizeof text, value).ptr;
  *end = '\0';
  return std::strtod(text, nullptr);
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
  cmd->add_option("--threshold", options->rule.threshold, "a class is predicted when its probability is at least this")
      ->check(between(0.0, 1.0));
  cmd->add_option("--top-k", options->rule.top_k, "predict at most the k most probable classes (0 = no limit)")
      ->check(at_least(0));
  cmd->add_option("--format", options->format, "output format")->check(CLI::IsMember({"json", "csv"}));
  cmd->add_option("--out", options->out, "write here instead of standard output");
  cmd->add_option("--batch-size", options->predictor.batch_size, "images per forward pass")->check(at_least(1));
  cmd->add_option("--workers", options->predictor.workers, "threads decoding images ahead of the model (0 = none: decode on the main thread)")
      ->check(at_least(0));
  cmd->add_option("--on-bad-image", options->on_bad_image,
                  "an unreadable image: error (stop) or skip (leave it out of the output, with a warning)")
      ->check(CLI::IsMember({"error", "skip"}));
  cmd->add_flag("--no-ema", options->no_ema, "use the raw weights instead of the EMA weights");
  cmd->add_option("--device", options->predictor.device, "compute device: auto, cpu, cuda or cuda:N")->check(device_name());
  cmd->add_option("--precision", options->predictor.precision, precision_help())
      ->check(CLI::IsMember({"auto", "fp32", "bf16"}));
  return [options] {
    if (!options->out.empty()) check_output_path(options->out);  // before the work, not after it
    options->predictor.use_ema = !options->no_ema;
    options->predictor.on_bad_image = bad_image_policy_named(options->on_bad_image);
    options->predictor.progress = isatty(STDERR_FILENO) != 0;  // a bar on a terminal, not in logs
    Predictor predictor(options->model, options->predictor);
    // The header goes to stderr so that the JSON or CSV on stdout stays machine-readable.
    std::cerr << predictor.description() << "\n";
    const auto files = expand_image_inputs(options->inputs);
    const auto predictions = predictor.predict(files, options->rule);
    const auto& names = predictor.class_names();
    std::string text;
    if (options->format == "json") {
      // Keys in reading order: the image, what was predicted (most probable first), then every class.
      nlohmann::ordered_json results = nlohmann::ordered_json::array();
      for (const auto& prediction : predictions) {
        nlohmann::ordered_json per_class = nlohmann::ordered_json::array();
        for (std::size_t c = 0; c < names.size(); ++c)
          per_class.push_back({{"class", names[c]}, {"probability", shortest(prediction.probabilities[c])},
                              {"logit", shortest(prediction.logits[c])}});
        results.push_back({{"image", prediction.image}, {"predicted", prediction.predicted}, {"classes", per_class}});
      }
      text = results.dump(2) + "\n";
    } else {
      std::ostringstream csv;
      csv << "image";
      for (const auto& name : names) csv << "," << csv_field(name + " logit") << "," << csv_field(name + " probability");
      csv << ",predicted\n";
      for (const auto& prediction : predictions) {
        csv << csv_field(prediction.image);
        for (std::size_t c = 0; c < names.size(); ++c) csv << "," << prediction.logits[c] << "," << prediction.probabilities[c];
        std::string joined;
        for (const auto& name : prediction.predicted) joined += (joined.empty() ? "" : ";") + name;
        csv << "," << csv_field(joined) << "\n";
      }
      text = csv.str();
    }
    if (options->out.empty()) std::cout << text;
    else write_file_atomic(options->out, text);
    std::size_t labelled = 0;
    for (const auto& prediction : predictions) labelled += prediction.predicted.empty() ? 0 : 1;
    std::cerr << "predict: " << predictions.size() << " image(s)";
    if (predictions.size() < files.size()) std::cerr << ", " << files.size() - predictions.size() << " skipped as unreadable";
    std::cerr << ", " << labelled << " with at least one predicted label"
              << (options->out.empty() ? "" : "; written to " + options->out) << "\n";
    return 0;
  };
}

RegisterCommand registration("predict", add_predict);

}  // namespace
}  // namespace cprfl::app
