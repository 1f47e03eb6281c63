#include "cprfl/train/trainer.h"

#include <chrono>
#include <csignal>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <sstream>

#include "cprfl/common/autocast.h"
#include "cprfl/common/device.h"
#include "cprfl/common/precision.h"
#include "cprfl/common/error.h"
#include "cprfl/common/fault_point.h"
#include "cprfl/common/progress.h"
#include "cprfl/common/stop_signal.h"
#include "cprfl/config/prompt_setup.h"
#include "cprfl/data/class_stats.h"
#include "cprfl/dist/environment.h"
#include "cprfl/eval/evaluate.h"
#include "cprfl/io/atomic_file.h"
#include "cprfl/model/build.h"
#include "cprfl/model/inference.h"
#include "cprfl/train/diagnostics.h"
#include "cprfl/train/run_lock.h"

namespace cprfl {
namespace {

// Training and validation parts of the training list: a seeded, fixed split.
std::pair<ImageList, ImageList> split_validation(const ImageList& list, double fraction, uint64_t seed) {
  ImageList train = list, val = list;
  train.records.clear();
  val.records.clear();
  if (fraction <= 0) return {list, val};
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

// In a data-parallel run each rank loads its shard: training shards are padded to equal
// lengths (every rank takes the same number of steps), evaluation shards hold every image once.
std::unique_ptr<DataLoader> make_loader(const RunOptions& options, ImageList list, int num_classes, bool train,
                                        int64_t batch_size, bool pin_memory, const Communicator* communicator) {
  const DataOptions& data = options.data;
  auto dataset = std::make_shared<const ImageDataset>(std::move(list), data.root, num_classes,
                                                      train ? data.train_transform : data.eval_transform);
  LoaderOptions loader;
  loader.batch_size = static_cast<int>(batch_size);
  loader.shuffle = train;
  loader.drop_last = false;
  loader.workers = data.workers;
  loader.seed = options.train.order_seed;
  loader.augment_seed = options.train.augment_seed;
  loader.bad_images = data.on_bad_image;
  loader.pin_memory = pin_memory;
  if (communicator) {
    loader.shard_rank = communicator->rank();
    loader.shard_count = communicator->world_size();
    loader.shard_pad = train;
  }
  return std::make_unique<DataLoader>(dataset, loader);
}

nlohmann::json group_summary(const Metrics& metrics) {
  auto value = [](double v) { return std::isnan(v) ? nlohmann::json(nullptr) : nlohmann::json(100.0 * v); };
  return {{"map_pct", value(metrics.map)},
          {"head_map_pct", value(metrics.group_map[static_cast<int>(Group::kHead)])},
          {"medium_map_pct", value(metrics.group_map[static_cast<int>(Group::kMedium)])},
          {"tail_map_pct", value(metrics.group_map[static_cast<int>(Group::kTail)])}};
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

void print_test_summary(const nlohmann::json& record) {
  auto show = [](const nlohmann::json& g) {
    auto v = [](const nlohmann::json& x) { return x.is_null() ? std::string("-") : fixed(x.get<double>(), 2); };
    return "mAP " + v(g["map_pct"]) + " (head " + v(g["head_map_pct"]) + " / medium " + v(g["medium_map_pct"]) +
           " / tail " + v(g["tail_map_pct"]) + ")";
  };
  std::cerr << "  test " << show(record["test"]);
  if (record.contains("test_ema")) std::cerr << "  |  EMA " << show(record["test_ema"]);
  std::cerr << "\n";
}

// A resumed run keeps its model: the keys that shape it must equal the checkpoint's.
void check_same_model(const Config& given, const Config& stored, const std::string& checkpoint_path) {
  std::string differences;
  for (const auto& entry : config_schema()) {
    const std::string& key = entry.key;
    const bool shapes_model = (key.rfind("model.", 0) == 0 && key != "model.backbone_weights") ||
                              key.rfind("prompts.", 0) == 0;
    if (!shapes_model || given.get_string(key) == stored.get_string(key)) continue;
    differences += (differences.empty() ? "" : ", ") + key + " (the run has " + stored.get_string(key) + ", given " +
                   given.get_string(key) + ")";
  }
  if (!differences.empty())
    fail_in(checkpoint_path, "--resume cannot change the model of a run: " + differences +
                                 "; drop those --set values, or start a new run in another train.out_dir");
}

// An input file that is not there: for the Fashion-LT defaults, how to make them.
void require_input(const std::string& path, const char* what) {
  std::error_code error;
  if (std::filesystem::exists(path, error)) return;
  std::string hint;
  const std::string folder = std::filesystem::path(path).parent_path().string();
  if (folder.find("fashion-lt") != std::string::npos || folder.find("fashion_lt") != std::string::npos)
    hint = "; make the Fashion-LT benchmark first: cprfl make-fashion-lt --out " + folder;
  fail_in(path, std::string("no such file (") + what + ")" + hint);
}

}  // namespace

TrainingData load_training_data(const DataOptions& data, uint64_t seed) {
  require_input(data.labels, "data.labels");
  require_input(data.train_list, "data.train_list");
  require_input(data.test_list, "data.test_list");
  TrainingData out;
  out.class_names = read_labels(data.labels);
  const int num_classes = static_cast<int>(out.class_names.size());
  auto full_train = read_image_list(data.train_list, num_classes);
  std::tie(out.train, out.val) = split_validation(full_train, data.val_fraction, seed);
  out.test = read_image_list(data.test_list, num_classes);
  return out;
}

Trainer::Trainer(const Config& config, TrainingData data, Communicator* communicator)
    : config_(config), options_(run_options_of(config)), data_(std::move(data)),
      device_(pick_device(options_.train.device)), communicator_(communicator) {
  const int num_classes = static_cast<int>(data_.class_names.size());
  const int64_t batch_size = options_.optim.batch_size;
  // Class statistics from the part of the training list actually trained on.
  auto stats = compute_class_stats(data_.train, data_.class_names, options_.data.groups);
  const bool pin = device_.is_cuda();
  train_loader_ = make_loader(options_, data_.train, num_classes, true, batch_size, pin, communicator_);
  test_loader_ = make_loader(options_, data_.test, num_classes, false, 2 * batch_size, pin, communicator_);
  if (!data_.val.records.empty())
    val_loader_ = make_loader(options_, data_.val, num_classes, false, 2 * batch_size, pin, communicator_);
  if (options_.train.diagnostics)  // the training part as evaluation sees it (no augmentation)
    train_eval_loader_ = make_loader(options_, data_.train, num_classes, false, 2 * batch_size, pin, communicator_);
  if (device_.is_cuda()) allow_cuda_tf32(options_.train.tf32);
  autocast_ = device_.is_cuda() ? options_.optim.amp_cuda : cpu_autocast_enabled(options_.optim.amp_cpu);

  torch::manual_seed(options_.train.init_seed);
  info_ = ModelInfo{config_, data_.class_names, stats.counts, stats.num_images, {}};
  if (options_.model.type == "cprfl")
    info_.prompt_embeddings = load_prompt_embeddings(options_.prompts, options_.data.labels, num_classes, options_.train.init_seed);
  model_ = build_model(options_.model, num_classes, info_.prompt_embeddings);
  if (!options_.train.backbone_weights.empty()) load_backbone_weights(*model_, options_.train.backbone_weights);
  model_->to(device_);
  // Channels-last weights make every convolution run in that layout (its input is converted
  // once, at the stem); measured 5-10% faster training steps on CPU (README, Performance).
  if (options_.train.channels_last) convert_to_channels_last(*model_->backbone());
  if (communicator_) broadcast_state(*communicator_, *model_);  // every rank starts from rank 0's weights
  if (options_.optim.ema_decay > 0) {
    ema_model_ = build_model(options_.model, num_classes, info_.prompt_embeddings);
    ema_model_->to(device_);
    if (options_.train.channels_last) convert_to_channels_last(*ema_model_->backbone());
    ema_model_->eval();
    ema_ = std::make_unique<WeightEma>(*ema_model_, *model_, options_.optim.ema_decay);
  }
  LossOptions loss_options = options_.loss;
  loss_options.counts.counts = stats.counts;
  loss_options.counts.num_images = stats.num_images;
  loss_ = make_loss(options_.loss_name, loss_options);
  optimizer_ = make_optimizer(*model_, options_.optim.optimizer);
  ScheduleOptions schedule = options_.optim.schedule;
  schedule.total_steps = std::max<int64_t>(1, options_.optim.epochs * train_loader_->batches_per_epoch());
  schedule_ = std::make_unique<LrSchedule>(schedule);

  metric_options_.train_counts = stats.counts;
  metric_options_.group_thresholds = options_.data.groups;
  metric_options_.class_names = data_.class_names;
  metric_options_.warn_missing_positives = false;
  if (communicator_) {
    std::vector<torch::Tensor> trained;
    for (const auto& parameter : model_->parameters())
      if (parameter.requires_grad()) trained.push_back(parameter);
    gradient_sync_ = std::make_unique<GradientSync>(
        *communicator_, trained, static_cast<int64_t>(options_.train.dist_bucket_mb * (1 << 20)),
        options_.train.dist_overlap);
    state_.world_size = communicator_->world_size();
  }
}

Predictions Trainer::predict_on_all_ranks(MultiLabelClassifier& model, DataLoader& loader) {
  Predictions predictions = predict_all(model, loader, device_);
  if (!communicator_) return predictions;
  // Each rank scored its part of the list; the metrics need all of it (they do not depend on
  // the order of the rows, only on each row's scores and targets staying together).
  predictions.logits = communicator_->all_gather_rows(predictions.logits.contiguous());
  predictions.targets = communicator_->all_gather_rows(predictions.targets.contiguous());
  return predictions;
}

bool Trainer::any_rank(bool local) {
  if (!communicator_) return local;
  auto flag = torch::full({1}, local ? 1.0f : 0.0f);
  communicator_->all_reduce_sum(flag);
  return flag.item<float>() > 0;
}

void Trainer::check_replicas_agree() {
  // Rank 0's checksum of every weight and EMA weight against each rank's own: bit-equal
  // replicas give bit-equal sums (the same tensors summed in the same order).
  std::vector<double> sums;
  for (auto* model : {model_.get(), ema_model_.get()})
    if (model)
      for (const auto& tensor : model->parameters()) sums.push_back(tensor.to(torch::kDouble).sum().item<double>());
  auto mine = torch::tensor(sums, torch::kDouble);
  auto reference = mine.clone();
  communicator_->broadcast(reference, 0);
  auto differs = torch::zeros({communicator_->world_size()});
  if (!torch::equal(mine, reference)) differs[communicator_->rank()] = 1;
  communicator_->all_reduce_sum(differs);
  std::string ranks;
  for (int r = 0; r < communicator_->world_size(); ++r)
    if (differs[r].item<float>() > 0) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
  if (!ranks.empty())
    throw Error("train.dist_check_every: after step " + std::to_string(state_.step) + " the weights of rank(s) " + ranks +
                " differ from rank 0's; the replicas have diverged (the last checkpoint is intact)");
}

void Trainer::freeze_batchnorm_statistics() {
  for (auto& module : model_->modules(/*include_self=*/false))
    if (module->as<torch::nn::BatchNorm2dImpl>()) module->eval();
}

torch::Tensor Trainer::step(const torch::Tensor& images, const torch::Tensor& targets, const StepHook& hook) {
  torch::manual_seed(options_.train.dropout_seed * 1000003ULL + static_cast<uint64_t>(state_.step));  // dropout, resumable
  apply_schedule(optimizer_, *schedule_, state_.step);
  auto inputs = to_device(images, device_);
  auto labels = to_device(targets, device_);
  optimizer_.optimizer->zero_grad();
  auto loss = accumulate_gradients(
      [&](const torch::Tensor& chunk_images, const torch::Tensor& chunk_targets) {
        torch::Tensor logits;
        if (autocast_) {
          BFloat16Autocast autocast(device_);
          logits = model_->forward(chunk_images).to(torch::kFloat);
        } else {
          logits = model_->forward(chunk_images);
        }
        return loss_->forward(logits, chunk_targets);
      },
      inputs, labels, options_.optim.accumulate_steps, hook, [this](bool last) {
        if (gradient_sync_) gradient_sync_->prepare(last);
      });
  if (gradient_sync_) gradient_sync_->finish();  // every rank now holds the mean gradient
  if (options_.optim.grad_clip > 0) torch::nn::utils::clip_grad_norm_(model_->parameters(), options_.optim.grad_clip);
  fault_point("step");  // testing hook (common/fault_point.h)
  optimizer_.optimizer->step();
  if (ema_) ema_->update(*model_);
  ++state_.step;
  if (communicator_ && options_.train.dist_check_every > 0 && state_.step % options_.train.dist_check_every == 0)
    check_replicas_agree();
  if (hook) hook("optimizer");
  return loss;
}

nlohmann::json Trainer::run_epoch(bool progress, const std::function<bool()>& stop_requested) {
  const int64_t epoch = state_.epochs_done;
  const int64_t steps_per_epoch = train_loader_->batches_per_epoch();
  auto epoch_start = std::chrono::steady_clock::now();
  model_->train();
  if (options_.train.freeze_bn) freeze_batchnorm_statistics();
  train_loader_->start_epoch(epoch, state_.batches_into_epoch);
  std::unique_ptr<ProgressBar> bar;
  if (progress)
    bar = std::make_unique<ProgressBar>("epoch " + std::to_string(epoch + 1) + "/" + std::to_string(options_.optim.epochs),
                                        static_cast<int64_t>(train_loader_->epoch_order(epoch).size()), "img");
  // A stopped epoch continues with its sums so far: the epoch's loss is the same either way.
  torch::Tensor loss_sum = torch::full({}, state_.epoch_loss_sum, torch::TensorOptions().dtype(torch::kDouble).device(device_));
  int64_t batches = state_.batches_into_epoch, images = state_.epoch_images;
  double shown_loss = 0, lr = 0;
  bool loss_known = false;  // read back every 10 steps: "–" until the first read
  bool interrupted = false;
  while (auto batch = train_loader_->next()) {
    auto loss = step(batch->images, batch->targets);
    lr = optimizer_.optimizer->param_groups().back().options().get_lr();
    ++batches;
    images += batch->images.size(0);
    loss_sum += loss.to(torch::kDouble);
    // Read the loss back (a host sync) only every 10 steps and at the end of the epoch.
    bool last_batch = batch->position + 1 == steps_per_epoch;
    // (In a data-parallel run every rank stops at the same step, or their collectives would not match.)
    interrupted = any_rank(!last_batch && stop_requested && stop_requested()) && !last_batch;
    if (batches % 10 == 0 || last_batch || interrupted) {
      shown_loss = loss_sum.item<double>() / static_cast<double>(batches);
      loss_known = true;
      if (!std::isfinite(shown_loss)) {
        throw Error("training diverged: the loss became " + std::string(std::isnan(shown_loss) ? "NaN" : "Inf") +
                    " in epoch " + std::to_string(epoch + 1) + " (step " + std::to_string(state_.step) +
                    "); the last good checkpoint is " + options_.train.out_dir + "/" + kCheckpointName +
                    " — try a lower optim.lr or optim.grad_clip");
      }
    }
    if (bar) bar->update(images, "loss " + (loss_known ? fixed(shown_loss, 4) : std::string("–")) + " lr " + scientific(lr, 2));
    if (interrupted) break;
  }
  double train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
  if (bar) bar->finish("loss " + fixed(shown_loss, 4) + (interrupted ? " (stopped)" : ""));
  if (interrupted) {
    state_.batches_into_epoch = batches;
    state_.epoch_loss_sum = loss_sum.item<double>();
    state_.epoch_images = images;
    return {{"epoch", epoch + 1}, {"step", state_.step}, {"interrupted", true}};
  }
  state_.batches_into_epoch = 0;
  state_.epoch_loss_sum = 0;
  state_.epoch_images = 0;
  ++state_.epochs_done;
  if (communicator_) {  // the epoch's loss and images over all ranks (every rank took `batches` steps)
    auto totals = torch::tensor({loss_sum.item<double>(), static_cast<double>(images)}, torch::kDouble);
    communicator_->all_reduce_sum(totals);
    shown_loss = totals[0].item<double>() / static_cast<double>(batches * communicator_->world_size());
    images = static_cast<int64_t>(totals[1].item<double>());
  }
  return {{"epoch", epoch + 1},
          {"step", state_.step},
          {"train_loss", shown_loss},
          {"lr", lr},
          {"train_seconds", train_seconds},
          {"precision", autocast_ ? "bf16_autocast" : "fp32"},
          {"images_per_second", images / std::max(train_seconds, 1e-9)}};
}

bool Trainer::evaluate(nlohmann::json& record) {
  auto test_metrics = score_predictions(predict_on_all_ranks(*model_, *test_loader_), metric_options_);
  record["test"] = group_summary(test_metrics);
  fault_point("eval");  // testing hook: mid-evaluation
  if (ema_model_)
    record["test_ema"] = group_summary(score_predictions(predict_on_all_ranks(*ema_model_, *test_loader_), metric_options_));
  if (train_eval_loader_) {
    record["train_eval"] = group_summary(score_predictions(predict_on_all_ranks(*model_, *train_eval_loader_), metric_options_));
    record["diagnostics"] = weight_diagnostics(*model_, optimizer_);
  }
  if (!val_loader_) return false;
  auto& selected = ema_model_ ? *ema_model_ : *model_;
  auto val_metrics = score_predictions(predict_on_all_ranks(selected, *val_loader_), metric_options_);
  record["val"] = group_summary(val_metrics);
  if (!options_.train.select_best || !(val_metrics.map > state_.best_score)) return false;
  state_.best_score = val_metrics.map;
  state_.best_epoch = state_.epochs_done;
  return true;
}

TensorFile Trainer::checkpoint() {
  return make_checkpoint(info_, *model_, ema_model_.get(), state_, *optimizer_.optimizer);
}

TensorFile Trainer::model_file() { return make_model_file(info_, *model_, ema_model_.get()); }

void Trainer::restore(const std::string& checkpoint_path) {
  state_ = restore_checkpoint(checkpoint_path, data_.class_names, options_.data.labels, info_.prompt_embeddings, *model_,
                              ema_model_.get(), *optimizer_.optimizer, device_);
}

namespace {

// This process's place in a data-parallel run, or none (one process): from torchrun's or
// SLURM's environment (dist/environment.h).
std::unique_ptr<Communicator> join_run(const RunOptions& options, const torch::Device& device) {
  const DistEnvironment env = read_dist_environment();
  if (!env.distributed()) return nullptr;
  std::string backend = options.train.dist_backend;
  if (backend == "auto") backend = device.is_cuda() ? "nccl" : "gloo";
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(options.train.dist_timeout_s * 1000));
  return std::make_unique<Communicator>(env, backend, timeout);
}

}  // namespace

TrainSummary train(const Config& config, const RunControl& control) {
  const RunOptions options = run_options_of(config);  // checked before anything is written
  const std::string out_dir = options.train.out_dir;
  const int64_t epochs = options.optim.epochs;
  const std::string checkpoint_path = out_dir + "/" + kCheckpointName;
  if (control.resume) check_same_model(config, config_of_run(out_dir), checkpoint_path);
  auto communicator = join_run(options, pick_device(options.train.device));
  // Rank 0 alone writes (run folder, checkpoints, metrics, messages); the others wait for it.
  const bool writer = !communicator || communicator->rank() == 0;
  auto wait_for_writer = [&] {
    if (communicator) communicator->barrier();
  };
  // Every input is read (lists, labels, W, trunk weights) before the run folder is made.
  Trainer trainer(config, load_training_data(options.data, options.train.seed), communicator.get());
  std::unique_ptr<RunFolderLock> folder_lock;
  if (writer) {
    make_directories(out_dir);
    // Before anything is written: one process per run folder, for the whole run.
    folder_lock = std::make_unique<RunFolderLock>(out_dir);
    // A run killed while writing leaves temporary files; this run is their only writer.
    for (const char* name : {kCheckpointName, kBestName, "metrics.jsonl", "config.yaml"})
      remove_stale_temporaries(out_dir + "/" + name);
  }

  const int64_t world_size = communicator ? communicator->world_size() : 1;
  if (control.resume) {
    trainer.restore(checkpoint_path);
    TrainerState& state = trainer.state();
    if (writer && state.world_size != world_size)
      std::cerr << "train: the checkpoint was written by " << state.world_size << " process(es), this run has "
                << world_size << ": the data order of the remaining epochs differs from the original run's\n";
    state.world_size = world_size;
    // A run killed between writing the checkpoint and metrics.jsonl left the log one epoch
    // behind; the checkpoint is the record, so the log is rewritten from it.
    if (writer) write_metrics_log(out_dir, state.history);
    if (writer && state.epochs_done >= epochs)
      std::cerr << "train: " << checkpoint_path << " already finished all " << epochs << " epochs\n";
    else if (writer)
      std::cerr << "train: resuming after step " << state.step << " (epoch " << state.epochs_done + 1 << ")\n";
  } else if (std::filesystem::exists(checkpoint_path)) {
    fail_in(checkpoint_path, "a run already exists here; use --resume to continue it or choose another train.out_dir");
  }
  if (writer) write_file_atomic(out_dir + "/config.yaml", config.to_yaml());
  if (writer && communicator)
    std::cerr << "train: " << world_size << " processes (" << communicator->backend() << "), global batch "
              << options.optim.batch_size * world_size << " = " << options.optim.batch_size << " per process x "
              << world_size << "\n";
  wait_for_writer();

  TrainSummary summary;
  summary.out_dir = out_dir;
  TrainerState& state = trainer.state();
  const int64_t end_epoch =
      control.epochs_this_run > 0 ? std::min(epochs, state.epochs_done + control.epochs_this_run) : epochs;
  StopSignals stop;  // Ctrl-C / SIGTERM: finish the step, checkpoint it, stop
  bool stopped = false;
  while (state.epochs_done < end_epoch && !(stopped = trainer.any_rank(stop.requested()))) {
    auto epoch_start = std::chrono::steady_clock::now();
    nlohmann::json record = trainer.run_epoch(control.progress && writer, [&stop] { return stop.requested(); });
    if (record.value("interrupted", false)) {
      stopped = true;
      if (writer) write_file_atomic(checkpoint_path, serialize_tensor_file(trainer.checkpoint()), "checkpoint_write");
      wait_for_writer();
      break;
    }
    const int64_t epoch = state.epochs_done;  // 1-based number of the epoch just trained
    if (epoch % options.train.eval_every == 0 || epoch == epochs) {
      if (trainer.evaluate(record) && writer) save_tensor_file(out_dir + "/" + kBestName, trainer.model_file());
    }
    record["epoch_seconds"] = std::chrono::duration<double>(std::chrono::steady_clock::now() - epoch_start).count();
    state.history.push_back(record);
    if (writer) {
      // (save_tensor_file, with the testing hook "checkpoint_write" in the middle of the write)
      write_file_atomic(checkpoint_path, serialize_tensor_file(trainer.checkpoint()), "checkpoint_write");
      write_metrics_log(out_dir, state.history);
      if (control.epoch_lines && record.contains("test")) print_test_summary(record);
    }
    wait_for_writer();
    summary.last_epoch = record;
    ++summary.epochs_run;
  }
  summary.step = state.step;
  if (stopped) {
    summary.interrupted = true;
    if (writer)
      std::cerr << "train: " << (stop.signal() == SIGTERM ? "SIGTERM" : "interrupted") << " after step " << state.step
                << "; continue with: cprfl train --resume " << out_dir << "\n";
  }
  if (summary.last_epoch.is_null() && !state.history.empty()) summary.last_epoch = state.history.back();
  return summary;
}

}  // namespace cprfl
