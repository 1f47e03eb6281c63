#pragma once
// Single-label pretraining of the small ResNet on Fashion-MNIST items — the analogue of
// ImageNet pretraining for Fashion-LT (README, "Fashion-LT"). Trains backbone + global pool + Linear(d0, 10)
// with cross-entropy on the pretraining pool (train images 0–49,999; the last
// `val_images` of them are held out to report accuracy), then saves the trunk alone.
#include <cstdint>
#include <string>
#include <vector>

#include "cprfl/fashion_lt/fashion_mnist.h"

namespace cprfl {

struct PretrainOptions {
  std::vector<int64_t> widths{32, 64, 128};
  std::vector<int64_t> blocks{1, 1, 1};
  int64_t epochs = 3;
  int64_t batch_size = 128;
  double lr = 2e-3;
  double weight_decay = 1e-4;
  int64_t val_images = 5000;
  int64_t max_train_images = 0;  // 0 = the whole pool minus the held-out part (tests use fewer)
  uint64_t seed = 0;
  bool progress = true;
};

struct PretrainResult {
  double val_accuracy = 0;
  double train_loss = 0;
  double seconds = 0;
};

// Trains on `pool` and writes the trunk weights (a tensor file of kind "backbone") to `out`.
PretrainResult pretrain_backbone(const FashionMnist& pool, const PretrainOptions& options, const std::string& out);

}  // namespace cprfl
