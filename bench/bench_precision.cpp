// bench_precision: bf16 inference against float32 on a trained model file and a real list —
// the accuracy gates of `--precision bf16` on real data, and what bf16 buys there. Both forms
// are the eval/predict form (folded BatchNorm, channels-last weights, cached prompts); the
// images are decoded once, up front, so the timings are the model's alone.
//   build/bench/bench_precision --model M.cprfl [--list L --root R] [--batch-size 64]
//                               [--threads N] [--out bench/results/precision.json]
// (the list and root default to the model's own test list, as in `cprfl eval`).
#include <torch/torch.h>
#include <torch/version.h>

#include <iostream>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "cprfl/common/cpu_features.h"
#include "cprfl/common/shipped_data.h"
#include "cprfl/config/model_file.h"
#include "cprfl/data/list_file.h"
#include "cprfl/data/loader.h"
#include "cprfl/eval/evaluate.h"
#include "cprfl/io/atomic_file.h"
#include "cprfl/model/inference.h"
#include "timing.h"

using namespace cprfl;
using namespace cprfl::bench;
using json = nlohmann::json;

namespace {

struct Args {
  std::string model, list, root, out = "bench/results/precision.json";
  int batch_size = 64;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));  // as cprfl's default
};

// Every image of the list, decoded and preprocessed as eval does, with its targets.
std::pair<torch::Tensor, torch::Tensor> decode_all(const LoadedModel& loaded, const Args& args) {
  const auto& config = loaded.info.config;
  const int classes = static_cast<int>(loaded.info.class_names.size());
  const std::string list = args.list.empty() ? resolve_input_path(config.get_string("data.test_list")) : args.list;
  const std::string root = args.root.empty() ? resolve_input_path(config.get_string("data.root")) : args.root;
  auto dataset = std::make_shared<const ImageDataset>(read_image_list(list, classes), root, classes,
                                                      preprocessing_of(loaded.info));
  LoaderOptions options;
  options.batch_size = args.batch_size;
  options.shuffle = false;
  options.workers = 2;
  DataLoader loader(dataset, options);
  loader.start_epoch(0);
  std::vector<torch::Tensor> images, targets;
  while (auto batch = loader.next()) {
    images.push_back(batch->images.clone());  // the loader reuses its batch memory
    targets.push_back(batch->targets.clone());
  }
  return {torch::cat(images), torch::cat(targets)};
}

json agreement(const torch::Tensor& fp32, const torch::Tensor& bf16) {
  auto labels_fp32 = fp32 >= 0, labels_bf16 = bf16 >= 0;  // probability ≥ 0.5
  auto top_fp32 = std::get<0>(std::get<1>(fp32.topk(3, 1)).sort(1));
  auto top_bf16 = std::get<0>(std::get<1>(bf16.topk(3, 1)).sort(1));
  const auto images = static_cast<double>(fp32.size(0));
  return {{"relative_error", ((bf16 - fp32).norm() / fp32.norm()).item<double>()},
          {"max_abs_logit_diff", (bf16 - fp32).abs().max().item<double>()},
          {"max_abs_probability_diff", (torch::sigmoid(bf16) - torch::sigmoid(fp32)).abs().max().item<double>()},
          {"label_decisions_agree", (labels_fp32 == labels_bf16).to(torch::kDouble).mean().item<double>()},
          {"images_with_same_labels", (labels_fp32 == labels_bf16).all(1).sum().item<double>() / images},
          {"images_with_same_top3", (top_fp32 == top_bf16).all(1).sum().item<double>() / images}};
}

}  // namespace

int main(int argc, char** argv) {
  Args args;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string flag = argv[i], value = argv[i + 1];
    if (flag == "--model") args.model = value;
    else if (flag == "--list") args.list = value;
    else if (flag == "--root") args.root = value;
    else if (flag == "--batch-size") args.batch_size = std::max(1, std::atoi(value.c_str()));
    else if (flag == "--out") args.out = value;
    else if (flag == "--threads") args.threads = std::max(1, std::atoi(value.c_str()));
    else argc = 0;  // unknown flag: usage below
  }
  if (args.model.empty() || argc % 2 == 0) {
    std::cerr << "usage: bench_precision --model M.cprfl [--list L --root R] [--batch-size 64] [--threads N] [--out FILE]\n";
    return 2;
  }
  torch::set_num_threads(args.threads);
  try {
    json out;
    out["machine"] = {{"cpu", cpu_model_name()}, {"bf16_hardware", bf16_hardware_name(cpu_bf16_hardware())}};
    out["libtorch"] = TORCH_VERSION;
    out["threads"] = torch::get_num_threads();
    out["model"] = args.model;
    auto reference = load_model_file(args.model, true);
    auto [images, targets] = decode_all(reference, args);
    out["images"] = images.size(0);
    std::map<std::string, torch::Tensor> logits;
    for (const auto precision : {Precision::fp32, Precision::bf16}) {
      auto loaded = load_model_file(args.model, true);
      InferenceOptions options;
      options.precision = precision;
      prepare_for_inference(*loaded.model, options);
      torch::InferenceMode guard;
      auto& model = *loaded.model;
      auto forward_all = [&] {
        std::vector<torch::Tensor> parts;
        for (int64_t start = 0; start < images.size(0); start += args.batch_size)
          parts.push_back(model.forward(images.slice(0, start, start + args.batch_size)));
        return torch::cat(parts);
      };
      const std::string name = precision_name(precision);
      logits[name] = forward_all();
      auto list_times = time_calls([&] { forward_all(); }, 0, 3);
      auto one = images.slice(0, 0, 1);
      auto batch1 = summary_of(time_calls([&] { model.forward(one); }, 3, 30));
      Predictions predictions{logits[name], targets};
      MetricsOptions metric_options;
      metric_options.train_counts = loaded.info.class_counts;
      metric_options.group_thresholds = {loaded.info.config.get_int("data.head_min"),
                                         loaded.info.config.get_int("data.tail_below")};
      metric_options.class_names = loaded.info.class_names;
      auto metrics = to_json(score_predictions(predictions, metric_options));
      out[name] = {{"list_seconds", summary_of(list_times)},
                   {"images_per_s", static_cast<double>(images.size(0)) / median_of(list_times)},
                   {"batch1", batch1},
                   {"map_pct", metrics["map_pct"]},
                   {"groups", metrics["groups"]}};
    }
    out["agreement"] = agreement(logits["fp32"], logits["bf16"]);
    out["bf16_speedup"] = {{"list", out["bf16"]["images_per_s"].get<double>() / out["fp32"]["images_per_s"].get<double>()},
                           {"batch1", out["fp32"]["batch1"]["median_s"].get<double>() /
                                          out["bf16"]["batch1"]["median_s"].get<double>()}};
    write_file_atomic(args.out, out.dump(2) + "\n");
    std::cout << out.dump(2) << "\n";
  } catch (const std::exception& e) {
    std::cerr << "bench_precision: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
