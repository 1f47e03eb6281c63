// Data-parallel training (dist/): the launch environment, the launcher's command line, the
// sharded sampler, and whole runs of 2 processes on 127.0.0.1 over Gloo started by
// `cprfl train --nproc 2` — against one process with the global batch, with a worker that
// fails at start-up, and with a rank killed mid-run and the run resumed.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <cstdlib>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cprfl/config/model_file.h"
#include "cprfl/data/loader.h"
#include "cprfl/dist/environment.h"
#include "cprfl/dist/launcher.h"
#include "cprfl/io/atomic_file.h"
#include "cprfl/io/tensor_file.h"
#include "shapes_dataset.h"
#include "test_support.h"

using namespace cprfl;
using cprfl::testing::TempDir;

namespace {

std::function<std::optional<std::string>(const std::string&)> env_of(std::map<std::string, std::string> values) {
  return [values](const std::string& name) -> std::optional<std::string> {
    auto found = values.find(name);
    if (found == values.end()) return std::nullopt;
    return found->second;
  };
}

std::string error_reading(std::map<std::string, std::string> values) {
  return cprfl::testing::error_of([&] { read_dist_environment(env_of(values)); });
}

}  // namespace

TEST(DistEnvironment, ReadsTorchrunsVariables) {
  auto env = read_dist_environment(env_of({{"RANK", "3"}, {"WORLD_SIZE", "4"}, {"LOCAL_RANK", "1"},
                                           {"LOCAL_WORLD_SIZE", "2"}, {"MASTER_ADDR", "node7"},
                                           {"MASTER_PORT", "29400"}}));
  EXPECT_EQ(env.source, "torchrun");
  EXPECT_EQ(env.rank, 3);
  EXPECT_EQ(env.world_size, 4);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.local_world_size, 2);
  EXPECT_EQ(env.master_addr, "node7");
  EXPECT_EQ(env.master_port, 29400);
  EXPECT_TRUE(env.distributed());
  EXPECT_FALSE(env.is_main());
}

TEST(DistEnvironment, MapsSlurmsVariablesToTheSameRoles) {
  auto env = read_dist_environment(env_of({{"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}, {"SLURM_LOCALID", "1"},
                                           {"SLURM_NTASKS_PER_NODE", "4(x2)"}, {"MASTER_ADDR", "gpu01"}}));
  EXPECT_EQ(env.source, "slurm");
  EXPECT_EQ(env.rank, 5);
  EXPECT_EQ(env.world_size, 8);
  EXPECT_EQ(env.local_rank, 1);
  EXPECT_EQ(env.local_world_size, 4);
  EXPECT_EQ(env.master_addr, "gpu01");
  EXPECT_EQ(env.master_port, 29500);
  // torchrun's names win where both are set (torchrun inside an allocation).
  auto both = read_dist_environment(env_of({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"SLURM_PROCID", "5"}, {"SLURM_NTASKS", "8"}}));
  EXPECT_EQ(both.source, "torchrun");
  EXPECT_EQ(both.world_size, 2);
}

TEST(DistEnvironment, WithoutALauncherTheProcessIsTheWholeRun) {
  auto env = read_dist_environment(env_of({}));
  EXPECT_EQ(env.source, "none");
  EXPECT_FALSE(env.distributed());
  EXPECT_TRUE(env.is_main());
}

TEST(DistEnvironment, BadVariablesAreNamed) {
  EXPECT_EQ(error_reading({{"RANK", "2"}, {"WORLD_SIZE", "2"}}),
            "environment variable RANK='2': expected a whole number from 0 to 1");
  EXPECT_EQ(error_reading({{"WORLD_SIZE", "2"}}),
            "environment variable RANK is missing (torchrun sets WORLD_SIZE, so it must set RANK)");
  EXPECT_EQ(error_reading({{"RANK", "0"}, {"WORLD_SIZE", "2"}, {"MASTER_PORT", "70000"}}),
            "environment variable MASTER_PORT='70000': expected a whole number from 1 to 65535");
  EXPECT_EQ(error_reading({{"RANK", "x"}, {"WORLD_SIZE", "2"}}),
            "environment variable RANK='x': expected a whole number from 0 to 1");
  EXPECT_NE(error_reading({{"SLURM_PROCID", "1"}, {"SLURM_NTASKS", "2"}}).find("MASTER_ADDR is missing"),
            std::string::npos);
}

TEST(Launcher, DropsOnlyItsOwnFlag) {
  EXPECT_EQ(without_nproc({"cprfl", "--threads", "1", "train", "--nproc", "2", "--config", "c.yaml"}),
            (std::vector<std::string>{"cprfl", "--threads", "1", "train", "--config", "c.yaml"}));
  EXPECT_EQ(without_nproc({"cprfl", "train", "--nproc=4", "--set", "optim.lr=1"}),
            (std::vector<std::string>{"cprfl", "train", "--set", "optim.lr=1"}));
  const int port = free_loopback_port();
  EXPECT_GT(port, 0);
  EXPECT_LT(port, 65536);
}

// PyTorch's DistributedSampler: the same permutation on every rank, padded with its own first
// samples to a multiple of the world size, rank r taking positions r, r + W, ...
TEST(LoaderShards, TrainingShardsAreDistributedSamplersAndEvaluationShardsCoverEachImageOnce) {
  ImageList list;
  for (int i = 0; i < 10; ++i) list.records.push_back({"img" + std::to_string(i) + ".png", {0}, std::size_t(i + 1)});
  auto dataset = std::make_shared<const ImageDataset>(list, "", 1, TransformConfig{});
  LoaderOptions whole;
  whole.seed = 3;
  whole.batch_size = 2;
  whole.workers = 0;
  const auto order = DataLoader(dataset, whole).epoch_order(5);
  for (const bool pad : {true, false}) {
    std::vector<std::vector<std::int64_t>> shards;
    for (int rank = 0; rank < 3; ++rank) {
      LoaderOptions options = whole;
      options.shard_rank = rank;
      options.shard_count = 3;
      options.shard_pad = pad;
      DataLoader loader(dataset, options);
      shards.push_back(loader.epoch_order(5));
      EXPECT_EQ(loader.batches_per_epoch(), (static_cast<int64_t>(shards.back().size()) + 1) / 2);
    }
    if (pad) {
      for (const auto& shard : shards) EXPECT_EQ(shard.size(), 4u);  // 10 padded to 12
      for (std::size_t position = 0; position < 12; ++position)
        EXPECT_EQ(shards[position % 3][position / 3], order[position % 10]) << position;
    } else {
      EXPECT_EQ(shards[0].size(), 4u);
      EXPECT_EQ(shards[1].size(), 3u);
      EXPECT_EQ(shards[2].size(), 3u);
      std::multiset<std::int64_t> seen;
      for (const auto& shard : shards) seen.insert(shard.begin(), shard.end());
      EXPECT_EQ(seen, std::multiset<std::int64_t>(order.begin(), order.end()));
    }
  }
  LoaderOptions bad = whole;
  bad.shard_rank = 3;
  bad.shard_count = 3;
  EXPECT_EQ(cprfl::testing::error_of([&] { DataLoader(dataset, bad); }), "loader: shard 3 of 3 does not exist");
}

// ---- whole runs: 2 processes on loopback ------------------------------------------------------

namespace {

// The shapes task as a config file; BatchNorm statistics frozen (so the batch split cannot
// change them), no augmentation, no dropout, float32, no decoding threads.
std::string write_config(const TempDir& dir, int epochs) {
  cprfl::testing::write_shapes_dataset(dir.file("data"));
  Config config = cprfl::testing::shapes_config(dir.file("data"), dir.file("unused"), "cprfl");
  config.set("optim.epochs", std::to_string(epochs), "test");
  config.set("train.freeze_bn", "true", "test");
  config.set("data.workers", "0", "test");
  config.set("train.dist_timeout", "60", "test");
  const std::string path = dir.file("config.yaml");
  write_file_atomic(path, config.to_yaml());
  return path;
}

std::string train_command(const std::string& config, const std::string& out, int batch, int nproc) {
  std::ostringstream command;
  command << "--threads 1 train --quiet --config '" << config << "' --set train.out_dir='" << out
          << "' --set optim.batch_size=" << batch;
  if (nproc > 0) command << " --nproc " << nproc;
  return command.str();
}

std::map<std::string, torch::Tensor> weights_of(const std::string& path) {
  std::map<std::string, torch::Tensor> weights;
  for (auto& [name, tensor] : load_tensor_file(path).tensors)
    if (name.rfind("model/", 0) == 0) weights.emplace(name, tensor);
  return weights;
}

nlohmann::json last_record(const std::string& run_dir) {
  std::istringstream lines(cprfl::testing::read_text(run_dir + "/metrics.jsonl"));
  std::string line, last;
  while (std::getline(lines, line))
    if (!line.empty()) last = line;
  return nlohmann::json::parse(last);
}

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) { setenv(name, value.c_str(), 1); }
  ~ScopedEnv() { unsetenv(name_); }

 private:
  const char* name_;
};

}  // namespace

// Two ranks with batch 8 each against one process with batch 16: the same images per step
// (the sampler's shards interleave the same permutation), gradients averaged over the ranks.
// The tolerance: the two differ only in the order float32 sums the 16 rows' gradient terms
// (relative ≈ 16 · 2⁻²⁴ ≈ 1e-6 per step); Adam turns a gradient into a step of about lr (1e-2)
// times its sign-like ratio, so 12 steps move a weight by at most ~12 · 1e-2 · 1e-6 ≈ 1e-7 from
// the other run, except where a gradient is near zero and the ratio is unstable: 1e-4 leaves
// room for those, and a real fault (a shard taken twice, a rank's gradient dropped, gradients
// summed instead of averaged) moves weights by 1e-3 or more.
TEST(DataParallel, TwoRanksGiveOneProcesssWeightsWithTheGlobalBatch) {
  TempDir dir;
  const std::string config = write_config(dir, 1);
  auto one = cprfl::testing::run_cprfl(train_command(config, dir.file("one"), 16, 0));
  ASSERT_EQ(one.exit_code, 0) << one.output;
  // (With the replicas' weight checksums compared after every step: they must stay bit-equal.)
  auto two = cprfl::testing::run_cprfl(train_command(config, dir.file("two"), 8, 2) +
                                       " --set train.dist_check_every=1");
  ASSERT_EQ(two.exit_code, 0) << two.output;
  EXPECT_NE(two.output.find("2 processes (gloo), global batch 16 = 8 per process x 2"), std::string::npos) << two.output;
  EXPECT_EQ(last_record(dir.file("two"))["step"], 12);  // 192 images / 16 per global step
  auto a = weights_of(dir.file("one") + "/last.cprfl"), b = weights_of(dir.file("two") + "/last.cprfl");
  ASSERT_EQ(a.size(), b.size());
  double largest = 0;
  for (const auto& [name, tensor] : a) {
    ASSERT_TRUE(b.count(name)) << name;
    largest = std::max(largest, (tensor - b.at(name)).abs().max().item<double>());
  }
  std::cout << "[ figures  ] 2 ranks vs 1 process: largest weight difference " << largest << "\n";
  EXPECT_LE(largest, 1e-4);
  // Both evaluated the whole test list (the 2-rank run gathered its halves).
  const auto one_map = last_record(dir.file("one"))["test"]["map_pct"].get<double>();
  const auto two_map = last_record(dir.file("two"))["test"]["map_pct"].get<double>();
  EXPECT_NEAR(one_map, two_map, 0.5);
}

TEST(DataParallel, AWorkerThatFailsAtStartUpFailsTheRunWithItsMessage) {
  TempDir dir;
  const std::string config = write_config(dir, 1);
  auto result = cprfl::testing::run_cprfl(train_command(config, dir.file("run"), 8, 2) +
                                          " --set data.train_list=" + dir.file("missing.txt"));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find(dir.file("missing.txt")), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("train --nproc: worker rank"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("exited with code 1"), std::string::npos) << result.output;
}

// Rank 1 is killed (SIGKILL) in epoch 2: rank 0 stops with an error naming it instead of
// hanging, the epoch-1 checkpoint stays, and resuming both ranks ends where an uninterrupted
// 2-rank run ends.
TEST(DataParallel, AKilledRankStopsTheRunAndResumeFinishesIt) {
  TempDir dir;
  const std::string config = write_config(dir, 2);
  auto whole = cprfl::testing::run_cprfl(train_command(config, dir.file("whole"), 8, 2));
  ASSERT_EQ(whole.exit_code, 0) << whole.output;
  {
    ScopedEnv fault("CPRFL_FAULT_AT", "step:15");
    ScopedEnv only("CPRFL_FAULT_RANK", "1");
    auto killed = cprfl::testing::run_cprfl(train_command(config, dir.file("run"), 8, 2));
    EXPECT_EQ(killed.exit_code, 137) << killed.output;  // the first failure: rank 1's SIGKILL
    EXPECT_NE(killed.output.find("worker rank 1 was killed by signal 9"), std::string::npos) << killed.output;
    EXPECT_NE(killed.output.find("rank 1 has stopped"), std::string::npos) << killed.output;
  }
  EXPECT_EQ(last_record(dir.file("run"))["epoch"], 1);  // the epoch-1 checkpoint and log
  auto resumed = cprfl::testing::run_cprfl("--threads 1 train --quiet --resume '" + dir.file("run") + "' --nproc 2");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  const auto expected = last_record(dir.file("whole")), got = last_record(dir.file("run"));
  EXPECT_EQ(got["step"], expected["step"]);
  EXPECT_EQ(got["test"]["map_pct"], expected["test"]["map_pct"]);
  EXPECT_EQ(got["train_loss"], expected["train_loss"]);
}

// The real torchrun (PyPI's torch wheel) runs `cprfl train` as it is, and gives what
// `--nproc 2` gives. Skipped where no torchrun is found (CI has none): CPRFL_TORCHRUN names
// one, else the PATH is searched.
TEST(DataParallel, TorchrunRunsTheToolAsIs) {
  std::string torchrun;
  if (const char* given = std::getenv("CPRFL_TORCHRUN"); given && *given) torchrun = given;
  else if (std::system("command -v torchrun > /dev/null 2>&1") == 0) torchrun = "torchrun";
  if (torchrun.empty()) GTEST_SKIP() << "no torchrun (set CPRFL_TORCHRUN or put PyPI torch's torchrun on the PATH)";
  TempDir dir;
  const std::string config = write_config(dir, 1);
  auto ours = cprfl::testing::run_cprfl(train_command(config, dir.file("nproc"), 8, 2));
  ASSERT_EQ(ours.exit_code, 0) << ours.output;
  const std::string command = "'" + torchrun + "' --nproc-per-node 2 --no-python '" + std::string(CPRFL_TOOL_PATH) +
                              "' " + train_command(config, dir.file("torchrun"), 8, 0) + " > '" + dir.file("log") +
                              "' 2>&1";
  const int status = std::system(command.c_str());
  ASSERT_EQ(status, 0) << cprfl::testing::read_text(dir.file("log"));
  const auto a = last_record(dir.file("nproc")), b = last_record(dir.file("torchrun"));
  EXPECT_EQ(a["step"], b["step"]);
  EXPECT_EQ(a["train_loss"], b["train_loss"]);
  EXPECT_EQ(a["test"]["map_pct"], b["test"]["map_pct"]);
}

// A run may continue with another number of processes; it says that the data order changes.
TEST(DataParallel, ResumingWithAnotherWorldSizeSaysTheOrderChanges) {
  TempDir dir;
  const std::string config = write_config(dir, 2);
  auto first = cprfl::testing::run_cprfl(train_command(config, dir.file("run"), 8, 2) + " --epochs-this-run 1");
  ASSERT_EQ(first.exit_code, 0) << first.output;
  auto rest = cprfl::testing::run_cprfl("--threads 1 train --quiet --resume '" + dir.file("run") + "'");
  ASSERT_EQ(rest.exit_code, 0) << rest.output;
  EXPECT_NE(rest.output.find("the checkpoint was written by 2 process(es), this run has 1: the data order of the "
                             "remaining epochs differs from the original run's"),
            std::string::npos)
      << rest.output;
  EXPECT_EQ(last_record(dir.file("run"))["epoch"], 2);
}
