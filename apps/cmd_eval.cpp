// cprfl eval: scores a model file on a list (by default the test list of its config).
#include <filesystem>
#include <iostream>
#include <memory>

#include "command.h"
#include "cprfl/common/shipped_data.h"
#include "cprfl/common/device.h"
#include "cprfl/common/error.h"
#include "cprfl/data/list_file.h"
#include "cprfl/data/loader.h"
#include "cprfl/eval/evaluate.h"
#include "cprfl/io/atomic_file.h"
#include "cprfl/config/model_file.h"
#include "cprfl/io/npy.h"
#include "cprfl/model/inference.h"

namespace cprfl::app {
namespace {

struct EvalOptions {
  std::string model;
  std::string list;
  std::string root;
  std::string json;
  std::string scores;
  double threshold = 0.5;
  int top_k = 3;
  bool no_ema = false;
  int batch_size = 64;
  int workers = 2;
  std::string on_bad_image = "error";
  std::string labels;
  std::string device = "auto";
  std::string precision = "auto";
};

Runner add_eval(CLI::App& root) {
  auto options = std::make_shared<EvalOptions>();
  CLI::App* cmd = root.add_subcommand("eval", "Evaluate a model: mAP, head/medium/tail mAP, per-class AP, OP/OR/OF1/CP/CR/CF1");
  cmd->add_option("--model", options->model, "model file or checkpoint (.cprfl)")->required();
  cmd->add_option("--list", options->list, "list file to evaluate (default: data.test_list of the model's config)");
  cmd->add_option("--labels", options->labels, "labels file of the list; must name the model's classes in its order");
  cmd->add_option("--device", options->device, "compute device: auto, cpu, cuda or cuda:N")->check(device_name());
  cmd->add_option("--precision", options->precision, precision_help())->check(CLI::IsMember({"auto", "fp32", "bf16"}));
  cmd->add_option("--root", options->root, "folder the list's paths are relative to (default: data.root of the config)");
  cmd->add_option("--json", options->json, "write the full metrics as JSON here, with the model, ema, list and root used");
  cmd->add_option("--save-scores", options->scores,
                  "write the logits [N, C] as .npy here, the targets beside it as *_targets.npy and what they hold "
                  "(\"scores\": \"logits\", model, classes) as FILE.json, which `cprfl metrics` follows");
  cmd->add_option("--threshold", options->threshold, "probability threshold for OP/OR/OF1/CP/CR/CF1")->check(between(0.0, 1.0));
  cmd->add_option("--top-k", options->top_k,
                  "top-k metrics: only each image's k most probable classes may be predicted (0 = no limit)")
      ->check(at_least(0));
  cmd->add_flag("--no-ema", options->no_ema, "evaluate the raw weights instead of the EMA weights");
  cmd->add_option("--batch-size", options->batch_size, "images per forward pass")->check(at_least(1));
  cmd->add_option("--workers", options->workers, "threads decoding images ahead of the model (0 = none: decode on the main thread)")
      ->check(at_least(0));
  cmd->add_option("--on-bad-image", options->on_bad_image, "error: stop at an unreadable image; skip: warn and leave it out")
      ->check(CLI::IsMember({"error", "skip"}));
  return [options] {
    // Outputs are checked before the evaluation, which can take most of an hour.
    for (const std::string* output : {&options->json, &options->scores})
      if (!output->empty()) check_output_path(*output);
    auto loaded = load_model_file(options->model, !options->no_ema);
    const auto& config = loaded.info.config;
    int num_classes = static_cast<int>(loaded.info.class_names.size());
    // The model's own test list unless told otherwise (read as training read it: common/shipped_data.h).
    std::string list_path = options->list.empty() ? resolve_input_path(config.get_string("data.test_list")) : options->list;
    std::string root_dir = options->root.empty() ? resolve_input_path(config.get_string("data.root")) : options->root;
    std::error_code missing;
    if (options->list.empty() && !std::filesystem::exists(list_path, missing))
      fail_in(list_path, "no such file: the test list named in the model's config (data.test_list); pass --list and "
                         "--root to evaluate on a list here");
    std::vector<std::string> labels = options->labels.empty() ? loaded.info.class_names : read_labels(options->labels);
    if (labels != loaded.info.class_names) {
      throw Error(options->labels + ": its classes differ from the model's (" +
                  class_list_difference(loaded.info.class_names, "the model", labels, "the labels file") +
                  "); evaluate with the list the model was trained for");
    }
    auto list = read_image_list(list_path, num_classes);
    TransformConfig transform = preprocessing_of(loaded.info);
    auto dataset = std::make_shared<const ImageDataset>(list, root_dir, num_classes, transform);
    LoaderOptions loader_options;
    loader_options.batch_size = options->batch_size;
    loader_options.shuffle = false;
    loader_options.workers = options->workers;
    loader_options.bad_images = bad_image_policy_named(options->on_bad_image);
    auto device = pick_device(options->device);
    loader_options.pin_memory = device.is_cuda();
    DataLoader loader(dataset, loader_options);
    loaded.model->to(device);
    if (device.is_cuda()) allow_cuda_tf32(false);  // float32 scores match the CPU's (README, CUDA)
    InferenceOptions inference;  // folded BatchNorm, channels-last weights, and the precision
    inference.precision = inference_precision(options->precision, device);
    prepare_for_inference(*loaded.model, inference);
    auto predictions = predict_all(*loaded.model, loader, device, "eval");
    MetricsOptions metric_options;
    metric_options.threshold = options->threshold;
    metric_options.top_k = options->top_k == 0 ? num_classes : options->top_k;  // 0 = no limit
    // No training counts (an import without --train-list): no head/medium/tail groups.
    if (loaded.info.num_train_images > 0) metric_options.train_counts = loaded.info.class_counts;
    metric_options.group_thresholds = {config.get_int("data.head_min"), config.get_int("data.tail_below")};
    metric_options.class_names = loaded.info.class_names;
    auto metrics = score_predictions(predictions, metric_options);
    std::cout << "model " << options->model << " (" << (loaded.using_ema ? "EMA weights" : "weights") << "), list "
              << list_path << ", " << predictions.logits.size(0) << " images, " << precision_name(inference.precision) << ", preprocessing "
              << describe_preprocessing(transform) << "\n";
    std::cout << format_report(metrics);
    if (!options->json.empty()) {
      // What was evaluated, with the key names of `cprfl stats --json` ("list", "labels").
      nlohmann::json json = to_json(metrics);
      json["model"] = options->model;
      json["ema"] = loaded.using_ema;
      json["precision"] = precision_name(inference.precision);
      json["list"] = list_path;
      json["root"] = root_dir;
      json["labels"] = options->labels.empty() ? nlohmann::json(nullptr) : nlohmann::json(options->labels);
      write_file_atomic(options->json, json.dump(2) + "\n");
    }
    if (!options->scores.empty()) {
      write_npy(options->scores, predictions.logits);
      std::string targets_path = options->scores;
      auto dot = targets_path.rfind(".npy");
      targets_path = (dot == std::string::npos ? targets_path : targets_path.substr(0, dot)) + "_targets.npy";
      write_npy(targets_path, predictions.targets.to(torch::kByte));
      ScoresRecord record;
      record.logits = true;
      record.shape = predictions.logits.sizes().vec();
      record.classes = loaded.info.class_names;
      record.targets = std::filesystem::path(targets_path).filename().string();
      record.model = options->model;
      record.ema = loaded.using_ema;
      record.list = list_path;
      record.root = root_dir;
      write_file_atomic(scores_record_path(options->scores), to_json(record).dump(2) + "\n");
    }
    return 0;
  };
}

RegisterCommand registration("eval", add_eval);

}  // namespace
}  // namespace cprfl::app
