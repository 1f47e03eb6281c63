#include "cprfl/train/checkpoint.h"

#include <filesystem>
#include <sstream>

#include "cprfl/common/error.h"

namespace cprfl {
namespace {

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

TensorFile read_checkpoint_file(const std::string& path) {
  auto file = load_tensor_file(path);
  if (file.meta.value("kind", "") != "checkpoint") fail_in(path, "not a training checkpoint");
  return file;
}

}  // namespace

TensorFile make_checkpoint(const ModelInfo& info, const torch::nn::Module& model, const torch::nn::Module* ema_model,
                           const TrainerState& state, torch::optim::Optimizer& optimizer) {
  TensorFile checkpoint = make_model_file(info, model, ema_model);
  checkpoint.meta["kind"] = "checkpoint";
  checkpoint.meta["trainer"] = {{"epochs_done", state.epochs_done}, {"step", state.step}, {"best_score", state.best_score},
                                {"best_epoch", state.best_epoch}, {"history", state.history},
                                {"batches_into_epoch", state.batches_into_epoch}, {"epoch_loss_sum", state.epoch_loss_sum},
                                {"epoch_images", state.epoch_images}, {"world_size", state.world_size}};
  std::string bytes = optimizer_bytes(optimizer);
  checkpoint.tensors["trainer/optimizer"] =
      torch::from_blob(bytes.data(), {static_cast<int64_t>(bytes.size())}, torch::kByte).clone();
  return checkpoint;
}

TrainerState restore_checkpoint(const std::string& path, const std::vector<std::string>& class_names,
                                const std::string& labels_path, const torch::Tensor& prompt_embeddings, torch::nn::Module& model,
                                torch::nn::Module* ema_model, torch::optim::Optimizer& optimizer,
                                const torch::Device& device) {
  auto file = read_checkpoint_file(path);
  auto stored_names = file.meta.at("class_names").get<std::vector<std::string>>();
  if (stored_names != class_names)
    fail_in(path, "its classes differ from " + labels_path + ": " +
                      class_list_difference(stored_names, "the checkpoint", class_names, "the labels file"));
  load_model_weights(model, file, "model/", prompt_embeddings, path);
  if (ema_model) load_model_weights(*ema_model, file, "ema/", prompt_embeddings, path + " (EMA)");
  auto optimizer_state = file.tensors.find("trainer/optimizer");
  if (optimizer_state == file.tensors.end()) fail_in(path, "missing tensor 'trainer/optimizer'");
  load_optimizer_bytes(optimizer, optimizer_state->second, device, path);
  const auto& stored = file.meta.at("trainer");
  for (const char* key : {"epochs_done", "step", "best_epoch"})  // an out-of-range float would be UB to convert
    if (!stored.at(key).is_number_integer()) fail_in(path, std::string("trainer state: ") + key + " is not an integer");
  TrainerState state;
  state.epochs_done = stored.at("epochs_done").get<int64_t>();
  state.step = stored.at("step").get<int64_t>();
  state.best_score = stored.at("best_score").get<double>();
  state.best_epoch = stored.at("best_epoch").get<int64_t>();
  state.history = stored.at("history");
  if (stored.contains("world_size")) {  // (absent before data-parallel training: one process)
    if (!stored.at("world_size").is_number_integer() || stored.at("world_size").get<int64_t>() < 1)
      fail_in(path, "trainer state: world_size is not a positive integer");
    state.world_size = stored.at("world_size").get<int64_t>();
  }
  // Checkpoints written at an epoch's end (all before Ctrl-C handling) lack the mid-epoch fields.
  if (stored.contains("batches_into_epoch")) {
    for (const char* key : {"batches_into_epoch", "epoch_images"})
      if (!stored.at(key).is_number_integer()) fail_in(path, std::string("trainer state: ") + key + " is not an integer");
    state.batches_into_epoch = stored.at("batches_into_epoch").get<int64_t>();
    state.epoch_loss_sum = stored.at("epoch_loss_sum").get<double>();
    state.epoch_images = stored.at("epoch_images").get<int64_t>();
  }
  return state;
}

Config config_of_run(const std::string& out_dir) {
  std::string path = out_dir + "/" + kCheckpointName;
  if (!std::filesystem::exists(path)) fail_in(path, "no checkpoint to resume from");
  auto file = read_checkpoint_file(path);
  return Config::from_json(file.meta.at("config"), path + " (config)");
}

}  // namespace cprfl
