#include "cprfl/train/trainer.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "cprfl/common/autocast.h"
#include "cprfl/common/device.h"
#include "cprfl/common/error.h"
#include "cprfl/common/fault_point.h"
#include "cprfl/common/progress.h"
#include "cprfl/data/class_stats.h"
#include "cprfl/data/list_file.h"
#include "cprfl/data/loader.h"
#include "cprfl/eval/evaluate.h"
#include "cprfl/io/atomic_file.h"
#include "cprfl/config/model_file.h"
#include "cprfl/io/tensor_file.h"
#include "cprfl/loss/losses.h"
#include "cprfl/model/build.h"
#include "cprfl/model/inference.h"
#include "cprfl/io/state_dict.h"
#include "cprfl/train/accumulate.h"
#include "cprfl/train/optim.h"
#include "cprfl/train/run_lock.h"
#include "cprfl/train/schedule.h"

namespace cprfl {
namespace {

const char* kCheckpointName = "last.cprfl";
const char* kBestName = "best.cprfl";

// Training and validation parts of the training list: a seeded, fixed split.
std::pair<ImageList, ImageList> split_validation(const ImageList& list, double fraction, uint64_t seed) {
  ImageList train = list, val = list;
  train.records.clear();
  val.records.clear();
  if (fraction <= 0) return {list, val};
  if (fraction >= 1) throw Error("data.val_fraction must be below 1");
  std::vector<std::size_t> order(list.records.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::mt19937_64 rng(seed ^ 0x5eed5eedULL);
  for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[uniform_int(rng, static_cast<int64_t>(i))]);
  std::size_t held = static_cast<std::size_t>(std::llround(fraction * static_cast<double>(order.size())));
  std::vector<bool> in_val(order.size(), false);
  for (std::size_t i = 0; i < held; ++i) in_val[order[i]] = true;
  for (std::size_t i = 0; i < order.size(); ++i) (in_val[i] ? val : train).records.push_back(list.records[i]);
  if (train.records.empty() || val.records.empty())
    throw Error("data.val_fraction = " + std::to_string(fraction) + " leaves an empty training or validation part");
  return {train, val};
}

std::unique_ptr<DataLoader> make_loader(const Config& config, ImageList list, int num_classes, bool train,
                                        int64_t batch_size) {
  auto dataset = std::make_shared<const ImageDataset>(std::move(list), config.get_string("data.root"), num_classes,
                                                      transform_config_of(config, train));
  LoaderOptions options;
  options.batch_size = static_cast<int>(batch_size);
  options.shuffle = train;
  options.drop_last = false;
  options.workers = static_cast<int>(config.get_int("data.workers"));
  options.seed = static_cast<uint64_t>(config.get_int("train.seed"));
  options.bad_images = bad_image_policy_named(config.get_string("data.on_bad_image"));
  return std::make_unique<DataLoader>(dataset, options);
}

LossOptions loss_options_of(const Config& config, const ClassStats& stats) {
  LossOptions options;
  options.asl.gamma_pos = config.get_float("loss.gamma_pos");
  options.asl.gamma_neg = config.get_float("loss.gamma_neg");
  options.asl.clip = config.get_float("loss.clip");
  options.db.gamma = config.get_float("loss.db_gamma");
  options.db.lambda = config.get_float("loss.db_lambda");
  options.cb.beta = config.get_float("loss.cb_beta");
  options.counts.counts = stats.counts;
  options.counts.num_images = stats.num_images;
  return options;
}

nlohmann::json group_summary(const Metrics& metrics) {
  auto value = [](double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(100.0 * v); };
  return {{"map_pct", value(metrics.map)},
          {"head_map_pct", value(metrics.group_map[static_cast<int>(Group::kHead)])},
          {"medium_map_pct", value(metrics.group_map[static_cast<int>(Group::kMedium)])},
          {"tail_map_pct", value(metrics.group_map[static_cast<int>(Group::kTail)])}};
}

std::string optimizer_bytes(torch::optim::Optimizer& optimizer) {
  torch::serialize::OutputArchive archive;
  optimizer.save(archive);
  std::ostringstream out;
  archive.save_to(out);
  return out.str();
}

void load_optimizer_bytes(torch::optim::Optimizer& optimizer, const torch::Tensor& bytes, const torch::Device& device,
                          const std::string& path) {
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(reinterpret_cast<const char*>(bytes.data_ptr<uint8_t>()), static_cast<size_t>(bytes.numel()), device);
    optimizer.load(archive);
  } catch (const c10::Error& e) {
    fail_in(path, std::string("optimizer state does not fit this model: ") + e.what_without_backtrace());
  }
}

std::string fixed(double value, int digits) {
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(digits);
  out << value;
  return out.str();
}

// "1.88e-05": readable whatever the recipe's scale (1e-3 for Fashion-LT, 1e-5 for COCO-LT).
std::string scientific(double value, int digits) {
  std::ostringstream out;
  out.setf(std::ios::scientific);
  out.precision(digits);
  out << value;
  return out.str();
}

// metrics.jsonl: one line per finished epoch.
void write_metrics_log(const std::string& out_dir, const nlohmann::json& history) {
  std::string lines;
  for (const auto& line : history) lines += line.dump() + "\n";
  write_file_atomic(out_dir + "/metrics.jsonl", lines);
}

}  // namespace

Config config_of_run(const std::string& out_dir) {
  std::string path = out_dir + "/" + kCheckpointName;
  if (!std::filesystem::exists(path)) fail_in(path, "no checkpoint to resume from");
  auto file = load_tensor_file(path);
  if (file.meta.value("kind", "") != "checkpoint") fail_in(path, "not a training checkpoint");
  return Config::from_json(file.meta.at("config"), path + " (config)");
}

TrainSummary train(const Config& config, const TrainOptions& options) {
  const std::string out_dir = config.get_string("train.out_dir");
  const uint64_t seed = static_cast<uint64_t>(config.get_int("train.seed"));
  const int64_t epochs = config.get_int("optim.epochs");
  const int64_t batch_size = config.get_int("optim.batch_size");
  if (epochs < 1) throw Error("optim.epochs must be at least 1");
  if (batch_size < 1) throw Error("optim.batch_size must be at least 1");
  const bool select_best = config.get_string("train.select") == "best";
  if (select_best && config.get_float("data.val_fraction") <= 0)
    throw Error("train.select = best needs a validation split: set data.val_fraction (e.g. 0.1); the test list is never used for selection");
  make_directories(out_dir);
  // Before anything is written: one process per run folder, for the whole run.
  RunFolderLock folder_lock(out_dir);
  // A run killed while writing leaves temporary files; this run is their only writer.
  for (const char* name : {kCheckpointName, kBestName, "metrics.jsonl", "config.yaml"})
    remove_stale_temporaries(out_dir + "/" + name);

  // Data and class statistics (n_c from the part of the training list actually trained on).
  auto names = read_labels(config.get_string("data.labels"));
  const int num_classes = static_cast<int>(names.size());
  auto full_train = read_image_list(config.get_string("data.train_list"), num_classes);
  auto [train_list, val_list] = split_validation(full_train, config.get_float("data.val_fraction"), seed);
  GroupThresholds thresholds{config.get_int("data.head_min"), config.get_int("data.tail_below")};
  auto stats = compute_class_stats(train_list, names, thresholds);
  auto test_list = read_image_list(config.get_string("data.test_list"), num_classes);
  auto train_loader = make_loader(config, train_list, num_classes, true, batch_size);
  auto test_loader = make_loader(config, test_list, num_classes, false, 2 * batch_size);
  std::unique_ptr<DataLoader> val_loader;
  if (!val_list.records.empty()) val_loader = make_loader(config, val_list, num_classes, false, 2 * batch_size);

  // Model, EMA copy, loss, optimizer, schedule.
  const torch::Device device = pick_device(config.get_string("train.device"));
  torch::manual_seed(seed);
  ModelInfo info{config, names, stats.counts, stats.num_images, {}};
  if (config.get_string("model.type") == "cprfl") info.prompt_embeddings = load_prompt_embeddings(config, num_classes);
  auto model = build_model(config, num_classes, info.prompt_embeddings);
  if (!config.get_string("model.backbone_weights").empty())
    load_backbone_weights(*model, config.get_string("model.backbone_weights"));
  model->to(device);
  // Channels-last weights make every convolution run in that layout (its input is converted
  // once, at the stem); measured 5-10% faster training steps on CPU (README, Performance).
  const bool channels_last = config.get_bool("train.channels_last");
  if (channels_last) convert_to_channels_last(*model->backbone());
  const double ema_decay = config.get_float("optim.ema_decay");
  std::shared_ptr<MultiLabelClassifier> ema_model;
  std::unique_ptr<WeightEma> ema;
  if (ema_decay > 0) {
    ema_model = build_model(config, num_classes, info.prompt_embeddings);
    ema_model->to(device);
    if (channels_last) convert_to_channels_last(*ema_model->backbone());
    ema_model->eval();
    ema = std::make_unique<WeightEma>(*ema_model, *model, ema_decay);
  }
  auto loss_fn = make_loss(config.get_string("loss.name"), loss_options_of(config, stats));
  OptimizerOptions optimizer_options;
  optimizer_options.name = config.get_string("optim.name");
  optimizer_options.lr = config.get_float("optim.lr");
  optimizer_options.weight_decay = config.get_float("optim.weight_decay");
  optimizer_options.backbone_lr_mult = config.get_float("optim.backbone_lr_mult");
  auto bundle = make_optimizer(*model, optimizer_options);
  const int64_t steps_per_epoch = train_loader->batches_per_epoch();
  ScheduleOptions schedule_options;
  schedule_options.kind = config.get_string("optim.schedule");
  schedule_options.total_steps = std::max<int64_t>(1, epochs * steps_per_epoch);
  schedule_options.pct_start = config.get_float("optim.pct_start");
  schedule_options.div_factor = config.get_float("optim.div_factor");
  schedule_options.final_div_factor = config.get_float("optim.final_div_factor");
  LrSchedule schedule(schedule_options);
  const double grad_clip = config.get_float("optim.grad_clip");
  const bool amp = device.is_cuda() ? config.get_bool("optim.amp") : config.get_bool("optim.amp_cpu");
  const int64_t accumulate_steps = config.get_int("optim.accumulate_steps");
  if (accumulate_steps < 1) throw Error("optim.accumulate_steps must be at least 1");

  // Resume state.
  int64_t start_epoch = 0, step = 0, best_epoch = -1;
  double best_score = -1;
  nlohmann::json history = nlohmann::json::array();
  const std::string checkpoint_path = out_dir + "/" + kCheckpointName;
  if (options.resume) {
    auto file = load_tensor_file(checkpoint_path);
    if (file.meta.value("kind", "") != "checkpoint") fail_in(checkpoint_path, "not a training checkpoint");
    auto checkpoint_names = file.meta.at("class_names").get<std::vector<std::string>>();
    if (checkpoint_names != names)
      fail_in(checkpoint_path, "its classes differ from " + config.get_string("data.labels") + ": " +
                                   class_list_difference(checkpoint_names, "the checkpoint", names, "the labels file"));
    load_named_state(*model, tensors_with_prefix(file, "model/"), checkpoint_path);
    if (ema) load_named_state(*ema_model, tensors_with_prefix(file, "ema/"), checkpoint_path + " (EMA)");
    auto optimizer_state = file.tensors.find("trainer/optimizer");
    if (optimizer_state == file.tensors.end()) fail_in(checkpoint_path, "missing tensor 'trainer/optimizer'");
    load_optimizer_bytes(*bundle.optimizer, optimizer_state->second, device, checkpoint_path);
    const auto& state = file.meta.at("trainer");
    for (const char* key : {"epochs_done", "step", "best_epoch"})  // an out-of-range float would be UB to convert
      if (!state.at(key).is_number_integer()) fail_in(checkpoint_path, std::string("trainer state: ") + key + " is not an integer");
    start_epoch = state.at("epochs_done").get<int64_t>();
    step = state.at("step").get<int64_t>();
    best_score = state.at("best_score").get<double>();
    best_epoch = state.at("best_epoch").get<int64_t>();
    history = state.at("history");
    // A run killed between writing the checkpoint and metrics.jsonl left the log one epoch
    // behind; the checkpoint is the record, so the log is rewritten from it.
    write_metrics_log(out_dir, history);
    if (start_epoch >= epochs) std::cerr << "train: " << checkpoint_path << " already finished all " << epochs << " epochs\n";
    else std::cerr << "train: resuming after epoch " << start_epoch << " (step " << step << ")\n";
  } else if (std::filesystem::exists(checkpoint_path)) {
    fail_in(checkpoint_path, "a run already exists here; use --resume to continue it or choose another train.out_dir");
  }
  write_file_atomic(out_dir + "/config.yaml", config.to_yaml());

  MetricsOptions metric_options;
  metric_options.train_counts = stats.counts;
  metric_options.group_thresholds = thresholds;
  metric_options.class_names = names;
  metric_options.warn_missing_positives = false;

  TrainSummary summary;
  summary.out_dir = out_dir;
  const int64_t eval_every = std::max<int64_t>(1, config.get_int("train.eval_every"));
  int64_t end_epoch = options.epochs_this_run > 0 ? std::min(epochs, start_epoch + options.epochs_this_run) : epochs;
  for (int64_t epoch = start_epoch; epoch < end_epoch; ++epoch) {
    auto epoch_start = std::chrono::steady_clock::now();
    model->train();
    train_loader->start_epoch(epoch);
    std::unique_ptr<ProgressBar> bar;
    if (options.progress)
      bar = std::make_unique<ProgressBar>("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(epochs),
                                          static_cast<int64_t>(train_list.records.size()), "img");
    torch::Tensor loss_sum = torch::zeros({}, torch::TensorOptions().dtype(torch::kDouble).device(device));
    int64_t batches = 0, images = 0;
    double shown_loss = 0, lr = 0;
    bool loss_known = false;  // read back every 10 steps: "–" until the first read
    while (auto batch = train_loader->next()) {
      torch::manual_seed(seed * 1000003ULL + static_cast<uint64_t>(step));  // dropout, resumable
      apply_schedule(bundle, schedule, step);
      lr = bundle.optimizer->param_groups().back().options().get_lr();
      auto inputs = batch->images.to(device, /*non_blocking=*/true);
      auto targets = batch->targets.to(device, /*non_blocking=*/true);
      bundle.optimizer->zero_grad();
      auto loss = accumulate_gradients(
          [&](const torch::Tensor& chunk_images, const torch::Tensor& chunk_targets) {
            torch::Tensor logits;
            if (amp) {
              BFloat16Autocast autocast(device);
              logits = model->forward(chunk_images).to(torch::kFloat);
            } else {
              logits = model->forward(chunk_images);
            }
            return loss_fn->forward(logits, chunk_targets);
          },
          inputs, targets, accumulate_steps);
      if (grad_clip > 0) torch::nn::utils::clip_grad_norm_(model->parameters(), grad_clip);
      fault_point("step");  // testing hook (common/fault_point.h)
      bundle.optimizer->step();
      if (ema) ema->update(*model);
      ++step;
      ++batches;
      images += batch->images.size(0);
      loss_sum += loss.to(torch::kDouble);
      // Read the loss back (a host sync) only every 10 steps and at the end of the epoch.
      bool last_batch = batch->position + 1 == steps_per_epoch;
      if (batches % 10 == 0 || last_batch) {
        shown_loss = loss_sum.item<double>() / static_cast<double>(batches);
        loss_known = true;
        if (!std::isfinite(shown_loss)) {
          throw Error("training diverged: the loss became " + std::string(std::isnan(shown_loss) ? "NaN" : "Inf") +
                      " in epoch " + std::to_string(epoch + 1) + " (step " + std::to_string(step) +
                      "); the last good checkpoint is " + checkpoint_path + " — try a lower optim.lr or optim.grad_clip");
        }
      }
      if (bar) bar->update(images, "loss " + (loss_known ? fixed(shown_loss, 4) : std::string("–")) + " lr " + scientific(lr, 2));
    }
    double train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    if (bar) bar->finish("loss " + fixed(shown_loss, 4));

    nlohmann::json record = {{"epoch", epoch + 1},
                             {"step", step},
                             {"train_loss", shown_loss},
                             {"lr", lr},
                             {"train_seconds", train_seconds},
                             {"images_per_second", images / std::max(train_seconds, 1e-9)}};
    bool evaluate_now = (epoch + 1) % eval_every == 0 || epoch + 1 == epochs;
    if (evaluate_now) {
      auto test_metrics = score_predictions(predict_all(*model, *test_loader, device), metric_options);
      record["test"] = group_summary(test_metrics);
      fault_point("eval");  // testing hook: mid-evaluation
      if (ema) record["test_ema"] = group_summary(score_predictions(predict_all(*ema_model, *test_loader, device), metric_options));
      if (val_loader) {
        auto& selected = ema ? *ema_model : *model;
        auto val_metrics = score_predictions(predict_all(selected, *val_loader, device), metric_options);
        record["val"] = group_summary(val_metrics);
        if (select_best && val_metrics.map > best_score) {
          best_score = val_metrics.map;
          best_epoch = epoch + 1;
          save_tensor_file(out_dir + "/" + kBestName, make_model_file(info, *model, ema_model.get()));
        }
      }
    }
    record["epoch_seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    history.push_back(record);

    // Checkpoint: the model file plus everything needed to continue exactly.
    TensorFile checkpoint = make_model_file(info, *model, ema_model.get());
    checkpoint.meta["kind"] = "checkpoint";
    checkpoint.meta["trainer"] = {{"epochs_done", epoch + 1}, {"step", step}, {"best_score", best_score},
                                  {"best_epoch", best_epoch}, {"history", history}};
    std::string optimizer_state = optimizer_bytes(*bundle.optimizer);
    checkpoint.tensors["trainer/optimizer"] =
        torch::from_blob(optimizer_state.data(), {static_cast<int64_t>(optimizer_state.size())}, torch::kByte).clone();
    // (save_tensor_file, with the testing hook "checkpoint_write" in the middle of the write)
    write_file_atomic(checkpoint_path, serialize_tensor_file(checkpoint), "checkpoint_write");
    write_metrics_log(out_dir, history);
    if (options.progress && record.contains("test")) {
      auto show = [](const nlohmann::json& g) {
        auto v = [](const nlohmann::json& x) { return x.is_null() ? std::string("-") : fixed(x.get<double>(), 2); };
        return "mAP " + v(g["map_pct"]) + " (head " + v(g["head_map_pct"]) + " / medium " + v(g["medium_map_pct"]) +
               " / tail " + v(g["tail_map_pct"]) + ")";
      };
      std::cerr << "  test " << show(record["test"]);
      if (record.contains("test_ema")) std::cerr << "  |  EMA " << show(record["test_ema"]);
      std::cerr << "\n";
    }
    summary.last_epoch = record;
    ++summary.epochs_run;
  }
  if (summary.last_epoch.is_null() && !history.empty()) summary.last_epoch = history.back();
  return summary;
}

}  // namespace cprfl
