#include "cprfl/fashion_lt/pretrain.h"

#include <chrono>
#include <random>

#include "cprfl/common/error.h"
#include "cprfl/common/progress.h"
#include "cprfl/data/transforms.h"
#include "cprfl/io/tensor_file.h"
#include "cprfl/model/classifier.h"
#include "cprfl/model/backbone_registry.h"
#include "cprfl/model/resnet.h"
#include "cprfl/io/state_dict.h"
#include "cprfl/optim/optim.h"
#include "cprfl/optim/schedule.h"

namespace cprfl {
namespace {

// Items as the scene loader sees them: grey replicated to RGB, ImageNet-normalised.
// Training adds a random shift of up to 2 pixels and a horizontal flip.
torch::Tensor make_batch(const FashionMnist& pool, const std::vector<int64_t>& indices, bool augment, std::mt19937_64& rng) {
  const int side = kFashionMnistSide;
  const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
  auto batch = torch::empty({static_cast<int64_t>(indices.size()), 3, side, side});
  float* out = batch.data_ptr<float>();
  for (std::size_t b = 0; b < indices.size(); ++b) {
    const uint8_t* image = pool.image(indices[b]);
    int dx = 0, dy = 0;
    bool flip = false;
    if (augment) {
      dx = static_cast<int>(uniform_int(rng, 5)) - 2;
      dy = static_cast<int>(uniform_int(rng, 5)) - 2;
      flip = bernoulli(rng, 0.5);
    }
    for (int y = 0; y < side; ++y) {
      for (int x = 0; x < side; ++x) {
        int sx = (flip ? side - 1 - x : x) - dx, sy = y - dy;
        float value = (sx >= 0 && sx < side && sy >= 0 && sy < side) ? image[sy * side + sx] / 255.0f : 0.0f;
        for (int c = 0; c < 3; ++c) out[((b * 3 + c) * side + y) * side + x] = (value - mean[c]) / std[c];
      }
    }
  }
  return batch;
}

torch::Tensor labels_of(const FashionMnist& pool, const std::vector<int64_t>& indices) {
  auto labels = torch::empty({static_cast<int64_t>(indices.size())}, torch::kLong);
  for (std::size_t i = 0; i < indices.size(); ++i) labels[static_cast<int64_t>(i)] = pool.labels[indices[i]];
  return labels;
}

}  // namespace

PretrainResult pretrain_backbone(const FashionMnist& pool, const PretrainOptions& options, const std::string& out) {
  auto start_time = std::chrono::steady_clock::now();
  if (options.val_images < 1 || options.val_images >= pool.size())
    throw Error("pretrain: --val-images must be between 1 and the pool size - 1");
  if (options.epochs < 1 || options.batch_size < 1) throw Error("pretrain: epochs and batch size must be positive");
  int64_t train_end = pool.size() - options.val_images;
  int64_t train_count = options.max_train_images > 0 ? std::min(options.max_train_images, train_end) : train_end;
  torch::manual_seed(options.seed);
  SmallResNetOptions small;
  small.widths = options.widths;
  small.blocks = options.blocks;
  auto backbone = make_backbone("small", small);
  LinearHeadModel model(backbone.module, kFashionMnistClasses);
  OptimizerOptions optimizer_options;
  optimizer_options.lr = options.lr;
  optimizer_options.weight_decay = options.weight_decay;
  optimizer_options.backbone_lr_mult = 1.0;
  auto bundle = make_optimizer(*model, optimizer_options);
  int64_t steps_per_epoch = (train_count + options.batch_size - 1) / options.batch_size;
  ScheduleOptions schedule_options;
  schedule_options.total_steps = steps_per_epoch * options.epochs;
  schedule_options.pct_start = 0.2;
  LrSchedule schedule(schedule_options);

  std::vector<int64_t> order(static_cast<std::size_t>(train_count));
  for (int64_t i = 0; i < train_count; ++i) order[static_cast<std::size_t>(i)] = i;
  PretrainResult result;
  int64_t step = 0;
  for (int64_t epoch = 0; epoch < options.epochs; ++epoch) {
    model->train();
    std::mt19937_64 rng(options.seed * 7919 + static_cast<uint64_t>(epoch));
    for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[static_cast<std::size_t>(uniform_int(rng, static_cast<int64_t>(i)))]);
    ProgressBar bar("pretrain " + std::to_string(epoch + 1) + "/" + std::to_string(options.epochs), train_count, "img");
    double loss_sum = 0;
    int64_t batches = 0;
    for (int64_t begin = 0; begin < train_count; begin += options.batch_size) {
      std::vector<int64_t> indices(order.begin() + begin, order.begin() + std::min(train_count, begin + options.batch_size));
      auto images = make_batch(pool, indices, true, rng);
      auto labels = labels_of(pool, indices);
      apply_schedule(bundle, schedule, step++);
      auto loss = torch::nn::functional::cross_entropy(model->forward(images), labels);
      bundle.optimizer->zero_grad();
      loss.backward();
      bundle.optimizer->step();
      loss_sum += loss.item<double>();
      ++batches;
      if (options.progress) bar.update(std::min(train_count, begin + options.batch_size), "loss " + std::to_string(loss_sum / batches));
    }
    if (options.progress) bar.finish("loss " + std::to_string(loss_sum / batches));
    result.train_loss = loss_sum / static_cast<double>(batches);
  }
  // Held-out accuracy.
  torch::NoGradGuard no_grad;
  model->eval();
  int64_t correct = 0;
  std::mt19937_64 unused(0);
  for (int64_t begin = train_end; begin < pool.size(); begin += 256) {
    std::vector<int64_t> indices;
    for (int64_t i = begin; i < std::min(pool.size(), begin + 256); ++i) indices.push_back(i);
    auto predicted = model->forward(make_batch(pool, indices, false, unused)).argmax(1);
    correct += predicted.eq(labels_of(pool, indices)).sum().item<int64_t>();
  }
  result.val_accuracy = static_cast<double>(correct) / static_cast<double>(options.val_images);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();

  TensorFile file;
  file.meta = {{"kind", "backbone"}, {"backbone", "small"}, {"small_widths", options.widths},
               {"small_blocks", options.blocks}, {"pretrained_on", "Fashion-MNIST train images 0-" + std::to_string(train_end - 1)},
               {"val_accuracy", result.val_accuracy}, {"epochs", options.epochs}, {"seed", options.seed}};
  for (const auto& [name, tensor] : named_state(*model->backbone())) file.tensors["backbone." + name] = tensor;
  save_tensor_file(out, file);
  return result;
}

}  // namespace cprfl
