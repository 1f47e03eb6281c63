// The run's sources of randomness, each with its own seed key (train.init_seed, order_seed,
// augment_seed, dropout_seed), so that a result's dependence on the seed can be traced to one
// of them; the linear head's zero initialisation; and the train.diagnostics record.
#include <gtest/gtest.h>

#include <cmath>
#include <initializer_list>
#include <string>

#include "cprfl/config/model_file.h"
#include "cprfl/io/state_dict.h"
#include "cprfl/train/trainer.h"
#include "test_support.h"
#include "tiny_dataset.h"

using namespace cprfl;
using cprfl::testing::error_of;
using cprfl::testing::TempDir;

namespace {

bool same_weights(MultiLabelClassifier& a, MultiLabelClassifier& b) {
  auto state_a = named_state(a), state_b = named_state(b);
  for (std::size_t i = 0; i < state_a.size(); ++i)
    if (!torch::equal(state_a[i].second, state_b[i].second)) return false;
  return state_a.size() == state_b.size();
}

struct FirstBatch {
  std::vector<std::int64_t> indices;
  torch::Tensor images;
};

FirstBatch first_batch(Trainer& trainer) {
  trainer.train_loader().start_epoch(0);
  auto batch = trainer.train_loader().next();
  return {batch->indices, batch->images.clone()};
}

// The initial weights, the first batch's order and its pixels of a trainer with one setting.
struct Start {
  std::unique_ptr<Trainer> trainer;
  FirstBatch batch;
};

Start start_with(const Config& base, const std::string& key, const std::string& value) {
  Config config = base;
  config.set(key, value, "test");
  Start start{std::make_unique<Trainer>(config, load_training_data(data_options_of(config), 0)), {}};
  start.batch = first_batch(*start.trainer);
  return start;
}

// The tiny set (16 training, 8 test images) and its config, with `assignments` on top.
Config tiny_run(const TempDir& dir, std::initializer_list<const char*> assignments) {
  cprfl::testing::write_tiny_dataset(dir.file("data"), 16, 8);
  auto config = cprfl::testing::tiny_config(dir.file("data"), dir.file("run"));
  for (const char* assignment : assignments) config.set_assignment(assignment, "test");
  return config;
}

}  // namespace

// Each part seed moves its own part and nothing else; -1 (the default) means train.seed.
TEST(SeedKeys, EachSeedMovesOnlyItsOwnPart) {
  TempDir dir;
  cprfl::testing::write_tiny_dataset(dir.file("data"), 24, 8);
  auto base = cprfl::testing::tiny_config(dir.file("data"), dir.file("run"));
  base.set("data.workers", "0", "test");
  auto reference = start_with(base, "train.seed", "0");

  auto init = start_with(base, "train.init_seed", "1");
  EXPECT_FALSE(same_weights(init.trainer->model(), reference.trainer->model()));
  EXPECT_EQ(init.batch.indices, reference.batch.indices);
  EXPECT_TRUE(torch::equal(init.batch.images, reference.batch.images));

  auto order = start_with(base, "train.order_seed", "1");
  EXPECT_TRUE(same_weights(order.trainer->model(), reference.trainer->model()));
  EXPECT_NE(order.batch.indices, reference.batch.indices);

  auto augment = start_with(base, "train.augment_seed", "1");
  EXPECT_TRUE(same_weights(augment.trainer->model(), reference.trainer->model()));
  EXPECT_EQ(augment.batch.indices, reference.batch.indices);
  EXPECT_FALSE(torch::equal(augment.batch.images, reference.batch.images));  // RandAugment and Cutout draw anew

  // train.seed alone moves all three; naming its value for every part is the same run.
  auto all = start_with(base, "train.seed", "1");
  EXPECT_FALSE(same_weights(all.trainer->model(), reference.trainer->model()));
  EXPECT_NE(all.batch.indices, reference.batch.indices);
  Config explicit_parts = base;
  for (const char* key : {"train.init_seed", "train.order_seed", "train.augment_seed", "train.dropout_seed"})
    explicit_parts.set(key, "1", "test");
  auto parts = start_with(explicit_parts, "train.seed", "0");
  EXPECT_TRUE(same_weights(parts.trainer->model(), all.trainer->model()));
  EXPECT_EQ(parts.batch.indices, all.batch.indices);
  EXPECT_TRUE(torch::equal(parts.batch.images, all.batch.images));

  Config bad = base;
  bad.set("train.order_seed", "-2", "test");
  EXPECT_NE(error_of([&] { Trainer(bad, load_training_data(data_options_of(bad), 0)); }).find("train.order_seed"),
            std::string::npos);
}

// The dropout seed changes the masks (so the step's result) and nothing before the step.
TEST(SeedKeys, DropoutSeedChangesTheStepOnly) {
  TempDir dir;
  const auto base = tiny_run(dir, {"data.workers=0", "model.dropout=0.5"});
  auto reference = start_with(base, "train.dropout_seed", "0");
  auto other = start_with(base, "train.dropout_seed", "1");
  ASSERT_TRUE(same_weights(reference.trainer->model(), other.trainer->model()));
  ASSERT_TRUE(torch::equal(reference.batch.images, other.batch.images));
  auto targets = torch::zeros({reference.batch.images.size(0), 4});
  targets.index_put_({torch::indexing::Slice(), 0}, 1.0f);
  const float loss_a = reference.trainer->step(reference.batch.images, targets).item<float>();
  const float loss_b = other.trainer->step(other.batch.images, targets).item<float>();
  EXPECT_NE(loss_a, loss_b);
}

// model.linear_head_init = zero: every logit starts at 0 (probability 1/2) whatever the seed,
// and the first step moves the head (its weight gradient is (σ(0) − y)·pooled features ≠ 0).
TEST(LinearHead, ZeroInitStartsAtZeroLogitsAndLearns) {
  TempDir dir;
  auto config = tiny_run(dir, {"data.workers=0", "model.type=linear", "model.linear_head_init=zero"});
  auto a = start_with(config, "train.seed", "0");
  auto b = start_with(config, "train.seed", "5");
  auto& model = dynamic_cast<LinearHeadModelImpl&>(a.trainer->model());
  EXPECT_EQ(model.head->fc->weight.abs().max().item<float>(), 0.0f);
  EXPECT_EQ(model.head->fc->bias.abs().max().item<float>(), 0.0f);
  // The head starts the same whatever the seed (here the trunk is random: the config names no weights).
  auto& other = dynamic_cast<LinearHeadModelImpl&>(b.trainer->model());
  EXPECT_TRUE(torch::equal(model.head->fc->weight, other.head->fc->weight));
  {
    torch::NoGradGuard no_grad;
    a.trainer->model().eval();
    EXPECT_EQ(a.trainer->model().forward(a.batch.images).abs().max().item<float>(), 0.0f);
  }
  a.trainer->model().train();
  auto targets = torch::zeros({a.batch.images.size(0), 4});
  targets.index_put_({torch::indexing::Slice(), 1}, 1.0f);
  a.trainer->step(a.batch.images, targets);
  EXPECT_GT(model.head->fc->weight.abs().max().item<float>(), 0.0f);
  // The torch default is random: two seeds start apart.
  config.set("model.linear_head_init", "torch", "test");
  auto c = start_with(config, "train.seed", "0");
  auto d = start_with(config, "train.seed", "5");
  EXPECT_FALSE(same_weights(c.trainer->model(), d.trainer->model()));
}

// train.diagnostics: each evaluated epoch's record holds the lr of every group (the trunk's
// at optim.backbone_lr_mult times the head's), weight norms that match the saved model, BatchNorm
// statistics and the mAP on the training part.
TEST(Diagnostics, EpochRecordHasGroupsNormsBatchNormAndTrainMap) {
  TempDir dir;
  const auto config = tiny_run(dir, {"model.type=linear", "optim.epochs=1", "optim.ema_decay=0",
                                     "optim.backbone_lr_mult=0.25", "train.diagnostics=true"});
  RunControl control;
  control.progress = false;
  auto summary = train(config, control);
  const auto& record = summary.last_epoch;
  ASSERT_TRUE(record.contains("diagnostics")) << record.dump();
  ASSERT_TRUE(record.contains("train_eval"));
  const double train_map = record["train_eval"]["map_pct"].get<double>();
  EXPECT_GE(train_map, 0.0);
  EXPECT_LE(train_map, 100.0);
  const auto& lr = record["diagnostics"]["lr_groups"];
  EXPECT_NEAR(lr["backbone/decay"].get<double>(), 0.25 * lr["head/decay"].get<double>(), 1e-15);
  EXPECT_EQ(lr["head/decay"].get<double>(), lr["head/no_decay"].get<double>());
  EXPECT_GE(record["diagnostics"]["batchnorm"].size(), 1u);
  for (const auto& layer : record["diagnostics"]["batchnorm"]) EXPECT_GT(layer["running_var"].get<double>(), 0.0);
  // The head's weight norm against the model file's tensor, summed here element by element.
  auto saved = load_model_file(dir.file("run") + "/last.cprfl");
  torch::Tensor weight;
  for (const auto& [name, tensor] : named_state(*saved.model))
    if (name == "head.fc.weight") weight = tensor.contiguous();
  ASSERT_TRUE(weight.defined());
  double squares = 0;
  const float* values = weight.data_ptr<float>();
  for (int64_t i = 0; i < weight.numel(); ++i) squares += static_cast<double>(values[i]) * values[i];
  EXPECT_NEAR(record["diagnostics"]["weight_norms"]["head.fc.weight"].get<double>(), std::sqrt(squares),
              1e-9 * std::sqrt(squares));
}
