#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>

#include "cprfl/common/error.h"
#include "cprfl/config/model_file.h"
#include "cprfl/io/npy.h"
#include "cprfl/io/tensor_file.h"
#include "cprfl/train/trainer.h"
#include "test_support.h"
#include "tiny_dataset.h"

using cprfl::testing::error_of;

using namespace cprfl;
using cprfl::testing::TempDir;

namespace {

RunControl quiet(int64_t epochs_this_run = 0) {
  RunControl options;
  options.progress = false;
  options.epochs_this_run = epochs_this_run;
  return options;
}


}  // namespace

// A run stopped after epoch 1 and resumed ends with exactly the weights, EMA weights and
// metrics of an uninterrupted run (CPU, same thread count).
TEST(Trainer, ResumeIsExact) {
  TempDir dir;
  cprfl::testing::write_tiny_dataset(dir.file("data"));
  auto full = train(cprfl::testing::tiny_config(dir.file("data"), dir.file("full")), quiet());
  EXPECT_EQ(full.epochs_run, 3);

  auto split_config = cprfl::testing::tiny_config(dir.file("data"), dir.file("split"));
  EXPECT_EQ(train(split_config, quiet(1)).epochs_run, 1);
  auto resumed_config = config_of_run(dir.file("split"));
  RunControl resume = quiet();
  resume.resume = true;
  EXPECT_EQ(train(resumed_config, resume).epochs_run, 2);

  auto a = load_tensor_file(dir.file("full") + "/last.cprfl");
  auto b = load_tensor_file(dir.file("split") + "/last.cprfl");
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, tensor] : a.tensors) {
    if (name == "trainer/optimizer") continue;  // serialised bytes may embed paths; its effect is in the weights
    EXPECT_TRUE(torch::equal(tensor, b.tensors.at(name))) << name;
  }
  auto history_a = a.meta["trainer"]["history"], history_b = b.meta["trainer"]["history"];
  ASSERT_EQ(history_a.size(), 3u);
  ASSERT_EQ(history_b.size(), 3u);
  for (int e = 0; e < 3; ++e) {
    EXPECT_EQ(history_a[e]["test"], history_b[e]["test"]) << e;
    EXPECT_EQ(history_a[e]["test_ema"], history_b[e]["test_ema"]) << e;
    EXPECT_EQ(history_a[e]["train_loss"], history_b[e]["train_loss"]) << e;
  }
  // metrics.jsonl has one line per epoch and the model file loads for inference.
  auto lines = cprfl::testing::read_text(dir.file("split") + "/metrics.jsonl");
  EXPECT_EQ(std::count(lines.begin(), lines.end(), '\n'), 3);
  auto loaded = load_model_file(dir.file("split") + "/last.cprfl");
  EXPECT_TRUE(loaded.using_ema);
  EXPECT_EQ(loaded.info.class_names.size(), 4u);
}

TEST(Trainer, DivergenceStopsAndKeepsTheLastGoodCheckpoint) {
  TempDir dir;
  cprfl::testing::write_tiny_dataset(dir.file("data"));
  auto config = cprfl::testing::tiny_config(dir.file("data"), dir.file("run"));
  train(config, quiet(1));
  std::string before = cprfl::testing::read_text(dir.file("run") + "/last.cprfl");
  auto resumed = config_of_run(dir.file("run"));
  resumed.set("optim.lr", "1e38", "test");  // drives the weights to overflow
  RunControl resume = quiet();
  resume.resume = true;
  auto message = error_of([&] { train(resumed, resume); });
  EXPECT_NE(message.find("training diverged: the loss became"), std::string::npos) << message;
  EXPECT_EQ(cprfl::testing::read_text(dir.file("run") + "/last.cprfl"), before);
  EXPECT_NO_THROW(load_model_file(dir.file("run") + "/last.cprfl"));
}

TEST(Trainer, ConfigMistakesAreClearErrors) {
  TempDir dir;
  cprfl::testing::write_tiny_dataset(dir.file("data"));
  auto config = cprfl::testing::tiny_config(dir.file("data"), dir.file("run"));
  // Prompt rows must match the labels file.
  write_npy(dir.file("w.npy"), torch::randn({3, 12}));
  config.set("prompts.source", "npy", "test");
  config.set("prompts.file", dir.file("w.npy"), "test");
  EXPECT_NE(error_of([&] { train(config, quiet()); }).find("has 3 rows but the labels file has 4 classes"), std::string::npos);
  // Selecting on the test set is not offered.
  auto best = cprfl::testing::tiny_config(dir.file("data"), dir.file("run2"));
  best.set("train.select", "best", "test");
  EXPECT_NE(error_of([&] { train(best, quiet()); }).find("needs a validation split"), std::string::npos);
  // A second run into the same folder without --resume.
  auto once = cprfl::testing::tiny_config(dir.file("data"), dir.file("run3"));
  train(once, quiet(1));
  EXPECT_NE(error_of([&] { train(once, quiet()); }).find("a run already exists here"), std::string::npos);
}

TEST(Trainer, ValidationSplitSelectsBestAndLinearBaselineTrains) {
  TempDir dir;
  cprfl::testing::write_tiny_dataset(dir.file("data"), 30, 10);
  auto config = cprfl::testing::tiny_config(dir.file("data"), dir.file("run"));
  config.set("data.val_fraction", "0.2", "test");
  config.set("train.select", "best", "test");
  config.set("model.type", "linear", "test");
  config.set("loss.name", "db_focal", "test");
  auto summary = train(config, quiet());
  EXPECT_TRUE(summary.last_epoch.contains("val"));
  EXPECT_TRUE(std::filesystem::exists(dir.file("run") + "/best.cprfl"));
  auto loaded = load_model_file(dir.file("run") + "/best.cprfl");
  EXPECT_EQ(loaded.info.num_train_images, 24);  // 30 minus the 6 held out
}

// optim.amp_cpu: the whole model trains under CPU bf16 autocast (LayerNorm used to refuse the
// bf16 activations), close to the float32 run, and ends with a loadable float32 model.
TEST(Trainer, CpuBFloat16AutocastTrainsCloseToFloat32) {
  TempDir dir;
  cprfl::testing::write_tiny_dataset(dir.file("data"));
  auto fp32_config = cprfl::testing::tiny_config(dir.file("data"), dir.file("fp32"));
  fp32_config.set("optim.epochs", "1", "test");
  train(fp32_config, quiet());
  auto bf16_config = cprfl::testing::tiny_config(dir.file("data"), dir.file("bf16"));
  bf16_config.set("optim.epochs", "1", "test");
  bf16_config.set("optim.amp_cpu", "true", "test");
  train(bf16_config, quiet());

  auto fp32 = load_tensor_file(dir.file("fp32") + "/last.cprfl").meta["trainer"]["history"][0];
  auto bf16 = load_tensor_file(dir.file("bf16") + "/last.cprfl").meta["trainer"]["history"][0];
  const double fp32_loss = fp32["train_loss"].get<double>(), bf16_loss = bf16["train_loss"].get<double>();
  EXPECT_TRUE(std::isfinite(bf16_loss));
  EXPECT_NEAR(bf16_loss, fp32_loss, 0.05 * fp32_loss);
  EXPECT_NE(bf16_loss, fp32_loss);  // autocast really ran
  auto loaded = load_model_file(dir.file("bf16") + "/last.cprfl");
  for (const auto& parameter : loaded.model->parameters()) EXPECT_EQ(parameter.scalar_type(), torch::kFloat);
}
