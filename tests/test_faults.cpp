// Faults around model files and checkpoints (issue #6): a write that fails (full disk,
// unwritable folder) leaves the previous checkpoint intact and loadable; a model file from
// another format version, for other classes or missing a tensor is a clear error naming
// what differs. (Corruption and truncation: test_tensor_file.cpp; container version:
// TensorFile.CorruptionAndTruncationAreDetected; eval with another labels file: the e2e test.)
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdio>
#include <filesystem>
#include <utility>

#include "cprfl/config/options.h"
#include "cprfl/config/prompt_setup.h"
#include "cprfl/common/error.h"
#include "cprfl/io/atomic_file.h"
#include "cprfl/config/model_file.h"
#include "cprfl/io/tensor_file.h"
#include "cprfl/model/build.h"
#include "cprfl/train/trainer.h"
#include "test_support.h"
#include "tiny_dataset.h"

using namespace cprfl;
using cprfl::testing::error_of;
using cprfl::testing::read_text;
using cprfl::testing::TempDir;
using cprfl::testing::write_text;

namespace {

// A tiny run folder with a checkpoint after epoch 1 of 3.
void train_one_epoch(const std::string& data, const std::string& out) {
  cprfl::testing::write_tiny_dataset(data);
  RunControl options;
  options.progress = false;
  options.epochs_this_run = 1;
  train(cprfl::testing::tiny_config(data, out), options);
}

std::size_t temporaries_in(const std::string& folder) {
  std::size_t count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(folder))
    if (entry.path().filename().string().find(".tmp") != std::string::npos) ++count;
  return count;
}

// A small model file (3 classes, CPRFL head), as TensorFile.
TensorFile small_model_file() {
  ModelInfo info;
  info.config.set("model.small_widths", "4", "test");
  info.config.set("model.small_blocks", "1", "test");
  info.config.set("model.d", "8", "test");
  info.config.set("model.heads", "1", "test");
  info.config.set("model.head_dim", "4", "test");
  info.config.set("model.ffn", "8", "test");
  info.class_names = {"cat", "dog", "bird"};
  info.class_counts = {3, 2, 1};
  info.num_train_images = 5;
  info.prompt_embeddings = torch::randn({3, 6});
  auto model = build_model(info.config, 3, info.prompt_embeddings);
  return make_model_file(info, *model, nullptr);
}

// Runs a shell command line; its exit status (as pclose returns it) and its output.
std::pair<int, std::string> run_shell(const std::string& command) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::string output;
  char buffer[4096];
  for (std::size_t n; (n = fread(buffer, 1, sizeof buffer, pipe)) > 0;) output.append(buffer, n);
  return {pclose(pipe), output};
}

// `cprfl train --quiet --resume RUN` with a file-size limit of `blocks` 512-byte blocks: a
// write beyond it fails with EFBIG (SIGXFSZ ignored, so write() returns the error instead of
// the signal killing the process), as ENOSPC would on a full disk.
std::pair<int, std::string> resume_with_file_size_limit(const std::string& run, int blocks) {
  return run_shell("bash -c \"trap '' XFSZ; ulimit -f " + std::to_string(blocks) + "; exec " +
                   std::string(CPRFL_TOOL_PATH) + " train --quiet --resume " + run + "\"");
}

}  // namespace

// The disk fills up during the next checkpoint write (simulated with a file-size limit, which
// makes write() fail with EFBIG as ENOSPC would): the run stops with a clear error, and the
// previous checkpoint is byte-for-byte intact, loadable and resumable; no temporary is left.
TEST(Faults, FullDiskDuringACheckpointWriteKeepsThePreviousCheckpoint) {
  TempDir dir;
  train_one_epoch(dir.file("data"), dir.file("run"));
  const std::string checkpoint = dir.file("run") + "/last.cprfl";
  const std::string before = read_text(checkpoint);
  ASSERT_GT(before.size(), 20000u);
  auto [status, output] = resume_with_file_size_limit(dir.file("run"), 16);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << output;
  EXPECT_NE(output.find("error: " + checkpoint + ": write failed: File too large"), std::string::npos) << output;
  EXPECT_EQ(read_text(checkpoint), before);
  EXPECT_EQ(temporaries_in(dir.file("run")), 0u);
  EXPECT_EQ(load_tensor_file(checkpoint).meta["trainer"]["epochs_done"], 1);
  EXPECT_NO_THROW(load_model_file(checkpoint));
  // With space again, the run continues from it.
  auto resumed = cprfl::testing::run_cprfl("train --quiet --resume " + dir.file("run"));
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(load_tensor_file(checkpoint).meta["trainer"]["epochs_done"], 3);
}

// A run folder that takes no byte at all, made so without permissions (which root ignores):
// under a file-size limit of 0 the resumed run's first write (metrics.jsonl or config.yaml,
// before any training) fails; the run stops with an error naming the file, and the previous
// checkpoint is intact.
// And a run folder that cannot be created because a regular file sits where its parent
// folder should be (ENOTDIR) is an error naming the path, before anything is trained.
TEST(Faults, UnwritableRunFolderKeepsThePreviousCheckpoint) {
  TempDir dir;
  train_one_epoch(dir.file("data"), dir.file("run"));
  const std::string checkpoint = dir.file("run") + "/last.cprfl";
  const std::string before = read_text(checkpoint);
  auto [status, output] = resume_with_file_size_limit(dir.file("run"), 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 1) << output;
  EXPECT_NE(output.find("error: " + dir.file("run") + "/"), std::string::npos) << output;
  EXPECT_NE(output.find(": write failed: File too large"), std::string::npos) << output;
  EXPECT_EQ(read_text(checkpoint), before);
  EXPECT_EQ(temporaries_in(dir.file("run")), 0u);
  EXPECT_NO_THROW(load_model_file(checkpoint));

  write_text(dir.file("parent"), "a file where the run's parent folder should be");
  RunControl options;
  options.progress = false;
  std::string message = error_of([&] { train(cprfl::testing::tiny_config(dir.file("data"), dir.file("parent/run")), options); });
  EXPECT_NE(message.find(dir.file("parent/run") + ": cannot create directory: Not a directory"), std::string::npos)
      << message;
}

TEST(Faults, WriteIntoAMissingOrNonDirectoryFolderNamesThePath) {
  TempDir dir;
  std::string message = error_of([&] { write_file_atomic(dir.file("no/such/folder/m.cprfl"), "x"); });
  EXPECT_NE(message.find("no/such/folder/m.cprfl: cannot write: No such file or directory"), std::string::npos) << message;
  write_text(dir.file("file"), "I am a file");
  message = error_of([&] { make_directories(dir.file("file") + "/run"); });
  EXPECT_NE(message.find("file/run: cannot create directory"), std::string::npos) << message;
}

TEST(Faults, StaleTemporariesOfAKilledWriteAreRemovedOnTheNextRun) {
  TempDir dir;
  train_one_epoch(dir.file("data"), dir.file("run"));
  write_text(dir.file("run") + "/.last.cprfl.tmp123456", "half a checkpoint");
  write_text(dir.file("run") + "/.metrics.jsonl.tmp42", "{");
  write_text(dir.file("run") + "/.last.cprfl.tmp-not-ours", "kept");
  RunControl options;
  options.progress = false;
  options.resume = true;
  options.epochs_this_run = 1;
  train(config_of_run(dir.file("run")), options);
  EXPECT_FALSE(std::filesystem::exists(dir.file("run") + "/.last.cprfl.tmp123456"));
  EXPECT_FALSE(std::filesystem::exists(dir.file("run") + "/.metrics.jsonl.tmp42"));
  EXPECT_TRUE(std::filesystem::exists(dir.file("run") + "/.last.cprfl.tmp-not-ours"));
}

// Killed after the checkpoint was written but before metrics.jsonl: the resumed run
// rewrites the log from the checkpoint, even when no epoch is left to train.
TEST(Faults, MetricsLogBehindTheCheckpointIsRepairedOnResume) {
  TempDir dir;
  train_one_epoch(dir.file("data"), dir.file("run"));
  const std::string log = dir.file("run") + "/metrics.jsonl";
  const std::string complete = read_text(log);
  write_text(log, "");
  RunControl options;
  options.progress = false;
  options.resume = true;
  auto config = config_of_run(dir.file("run"));
  config.set("optim.epochs", "1", "test");  // nothing left to train
  train(config, options);
  EXPECT_EQ(read_text(log), complete);
}

TEST(Faults, ModelFileFromAnotherFormatVersion) {
  TensorFile file = small_model_file();
  file.meta["model_format"] = 7;
  std::string message = error_of([&] { model_from_tensor_file(file, "future.cprfl", true); });
  EXPECT_NE(message.find("future.cprfl: model format 7 is not supported by this build (reads formats 1 to 2)"),
            std::string::npos)
      << message;
  file.meta["kind"] = "backbone";
  message = error_of([&] { model_from_tensor_file(file, "trunk.cprfl", true); });
  EXPECT_NE(message.find("trunk.cprfl: not a cprfl model file (kind 'backbone')"), std::string::npos) << message;
}

TEST(Faults, ModelFileMissingATensorNamesIt) {
  TensorFile file = small_model_file();
  ASSERT_EQ(file.tensors.erase("model/backbone.layer1.0.conv1.weight"), 1u);
  std::string message = error_of([&] { model_from_tensor_file(file, "cut.cprfl", true); });
  EXPECT_NE(message.find("cut.cprfl (weights): missing key backbone.layer1.0.conv1.weight"), std::string::npos) << message;
  file = small_model_file();
  file.tensors.erase("prompts/W");
  message = error_of([&] { model_from_tensor_file(file, "cut.cprfl", true); });
  EXPECT_NE(message.find("cut.cprfl: missing tensor 'prompts/W'"), std::string::npos) << message;
  file = small_model_file();
  file.tensors["model/backbone.layer1.0.conv1.weight"] = torch::zeros({1, 2, 3});
  message = error_of([&] { model_from_tensor_file(file, "odd.cprfl", true); });
  EXPECT_NE(message.find("odd.cprfl (weights): shape mismatch for backbone.layer1.0.conv1.weight"), std::string::npos) << message;
}

TEST(Faults, ResumeWithAnotherClassListNamesTheDifference) {
  TempDir dir;
  train_one_epoch(dir.file("data"), dir.file("run"));
  auto config = config_of_run(dir.file("run"));
  auto labels = read_text(config.get_string("data.labels"));
  write_text(dir.file("renamed.txt"), "zebra\n" + labels.substr(labels.find('\n') + 1));
  config.set("data.labels", dir.file("renamed.txt"), "test");
  RunControl options;
  options.progress = false;
  options.resume = true;
  std::string message = error_of([&] { train(config, options); });
  EXPECT_NE(message.find("last.cprfl: its classes differ from " + dir.file("renamed.txt") +
                         ": class 0 is '" + labels.substr(0, labels.find('\n')) +
                         "' in the checkpoint but 'zebra' in the labels file"),
            std::string::npos)
      << message;
  write_text(dir.file("more.txt"), labels + "zebra\n");
  config.set("data.labels", dir.file("more.txt"), "test");
  message = error_of([&] { train(config, options); });
  EXPECT_NE(message.find("the checkpoint has 4 classes, the labels file has 5"), std::string::npos) << message;
}
