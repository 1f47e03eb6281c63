// Trainer::step is the one training step: run_epoch is a loop over it, and the benchmark's
// timed step (train/step_timing.h, what bench_perf reports) is the same step with a timing hook.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "cprfl/io/state_dict.h"
#include "cprfl/train/step_timing.h"
#include "cprfl/train/trainer.h"
#include "test_support.h"
#include "tiny_dataset.h"

using namespace cprfl;
using cprfl::testing::TempDir;

namespace {

Trainer make_trainer(const Config& config) {
  return Trainer(config, load_training_data(data_options_of(config), static_cast<uint64_t>(config.get_int("train.seed"))));
}

void expect_same_weights(MultiLabelClassifier& a, MultiLabelClassifier& b) {
  auto state_a = named_state(a), state_b = named_state(b);
  ASSERT_EQ(state_a.size(), state_b.size());
  for (std::size_t i = 0; i < state_a.size(); ++i) {
    ASSERT_EQ(state_a[i].first, state_b[i].first);
    EXPECT_TRUE(torch::equal(state_a[i].second, state_b[i].second)) << state_a[i].first;
  }
}

}  // namespace

// Same batch, same starting weights: the benchmark's timed step and a plain step give the same
// loss and leave the same weights (one process, one thread setting: bit for bit).
TEST(TrainerStep, BenchmarkTimedStepIsTheTrainerStep) {
  TempDir dir;
  cprfl::testing::write_tiny_dataset(dir.file("data"));
  auto config = cprfl::testing::tiny_config(dir.file("data"), dir.file("run"));
  config.set("optim.accumulate_steps", "2", "test");
  Trainer timed = make_trainer(config), plain = make_trainer(config);
  expect_same_weights(timed.model(), plain.model());
  timed.model().train();
  plain.model().train();
  timed.train_loader().start_epoch(0);
  auto batch = timed.train_loader().next();
  ASSERT_TRUE(batch.has_value());

  TimedStep measured = time_training_step(timed, batch->images, batch->targets);
  torch::Tensor loss = plain.step(batch->images, batch->targets);
  EXPECT_TRUE(torch::equal(measured.loss, loss)) << measured.loss.item<double>() << " vs " << loss.item<double>();
  EXPECT_GT(loss.item<double>(), 0.0);
  expect_same_weights(timed.model(), plain.model());
  EXPECT_EQ(timed.state().step, 1);
  EXPECT_GT(measured.forward_s, 0.0);
  EXPECT_GT(measured.backward_s, 0.0);
  EXPECT_GT(measured.optimizer_s, 0.0);
  EXPECT_GE(measured.total_s, measured.forward_s + measured.backward_s + measured.optimizer_s);
}

// The hook hears each micro-batch's forward and backward, then the optimizer, in that order.
TEST(TrainerStep, HookHearsEachPartInOrder) {
  TempDir dir;
  cprfl::testing::write_tiny_dataset(dir.file("data"));
  auto config = cprfl::testing::tiny_config(dir.file("data"), dir.file("run"));
  config.set("optim.accumulate_steps", "3", "test");
  Trainer trainer = make_trainer(config);
  trainer.model().train();
  trainer.train_loader().start_epoch(0);
  auto batch = trainer.train_loader().next();
  std::string heard;
  trainer.step(batch->images, batch->targets, [&](const char* phase) { heard += std::string(phase) + " "; });
  EXPECT_EQ(heard, "forward backward forward backward forward backward optimizer ");
}

// run_epoch is step() over the epoch's batches: the same weights as stepping by hand.
TEST(TrainerStep, AnEpochIsItsSteps) {
  TempDir dir;
  cprfl::testing::write_tiny_dataset(dir.file("data"));
  auto config = cprfl::testing::tiny_config(dir.file("data"), dir.file("run"));
  Trainer by_epoch = make_trainer(config), by_hand = make_trainer(config);
  auto record = by_epoch.run_epoch(/*progress=*/false);
  EXPECT_EQ(record["epoch"], 1);

  by_hand.model().train();
  by_hand.train_loader().start_epoch(0);
  int64_t steps = 0;
  while (auto batch = by_hand.train_loader().next()) {
    by_hand.step(batch->images, batch->targets);
    ++steps;
  }
  EXPECT_EQ(steps, 3);  // 24 images, batches of 8
  EXPECT_EQ(by_epoch.state().step, steps);
  expect_same_weights(by_epoch.model(), by_hand.model());
}
