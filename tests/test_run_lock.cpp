// One training process per run folder: the lock in train/run_lock.h, within one process, against
// other processes (alive, killed with SIGKILL), and through the real `cprfl train`; and readers of
// last.cprfl while a training rewrites it.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>

#include "cprfl/common/error.h"
#include "cprfl/config/model_file.h"
#include "cprfl/train/run_lock.h"
#include "support/test_support.h"
#include "support/tiny_dataset.h"

namespace cprfl {
namespace {

using testing::error_of;
using testing::read_text;
using testing::run_cprfl;
using testing::TempDir;
using testing::write_text;

std::string lock_path(const std::string& dir) { return dir + "/" + RunFolderLock::kFileName; }

// A child process that takes the folder's lock with raw system calls (no allocation after
// fork), tells the parent through a pipe, then either waits to be killed or kills itself.
pid_t lock_in_child(const std::string& dir, bool die_at_once) {
  const std::string path = lock_path(dir);
  int ready[2];
  if (pipe(ready) != 0) throw std::runtime_error("pipe failed");
  pid_t pid = fork();
  if (pid == 0) {
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT, 0644);
    if (fd < 0 || ::flock(fd, LOCK_EX | LOCK_NB) != 0) _exit(3);
    char byte = 1;
    if (::write(ready[1], &byte, 1) != 1) _exit(4);
    if (die_at_once) ::kill(::getpid(), SIGKILL);
    for (;;) ::pause();
  }
  ::close(ready[1]);
  char byte = 0;
  const ssize_t n = ::read(ready[0], &byte, 1);
  ::close(ready[0]);
  if (n != 1) throw std::runtime_error("the child did not take the lock");
  return pid;
}

int wait_for(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

TEST(RunLock, ASecondHolderInTheSameProcessIsRefusedUntilTheFirstLetsGo) {
  TempDir dir;
  {
    RunFolderLock first(dir.path());
    const std::string message = error_of([&] { RunFolderLock second(dir.path()); });
    EXPECT_NE(message.find("run folder " + dir.path() + " is in use by process " + std::to_string(::getpid()) +
                           " (started "),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("; wait for it or choose another train.out_dir"), std::string::npos) << message;
    EXPECT_NE(read_text(lock_path(dir.path())).find("process " + std::to_string(::getpid())), std::string::npos);
  }
  EXPECT_NO_THROW(RunFolderLock again(dir.path()));
}

TEST(RunLock, ALiveHolderInAnotherProcessBlocksAndAKilledOneDoesNot) {
  TempDir dir;
  pid_t holder = lock_in_child(dir.path(), false);
  EXPECT_NE(error_of([&] { RunFolderLock mine(dir.path()); }).find("is in use by"), std::string::npos);
  ::kill(holder, SIGKILL);
  const int status = wait_for(holder);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  EXPECT_NO_THROW(RunFolderLock mine(dir.path()));  // the kernel dropped the dead holder's lock

  pid_t suicide = lock_in_child(dir.path(), true);
  const int died = wait_for(suicide);
  ASSERT_TRUE(WIFSIGNALED(died) && WTERMSIG(died) == SIGKILL);
  EXPECT_NO_THROW(RunFolderLock mine(dir.path()));
}

TEST(RunLock, AMissingFolderIsNamed) {
  TempDir dir;
  const std::string message = error_of([&] { RunFolderLock lock(dir.file("missing")); });
  EXPECT_NE(message.find(dir.file("missing") + "/.cprfl.lock: cannot open the run folder's lock file"),
            std::string::npos)
      << message;
}

// A training long enough to overlap with what the test does meanwhile (a few seconds).
struct TrainingFixture {
  TempDir dir;
  std::string config_path = dir.file("run.yaml");
  std::string run = dir.file("run");
  int epochs = 6;
  TrainingFixture() {
    testing::write_tiny_dataset(dir.file("data"), 96, 16);
    auto config = testing::tiny_config(dir.file("data"), run);
    config.set("optim.epochs", std::to_string(epochs), "test");
    config.set("data.image_size", "96", "test");  // slow enough to overlap (about 1 s an epoch)
    config.set("data.workers", "0", "test");
    write_text(config_path, config.to_yaml());
  }
  std::string train_command() const { return "--threads 1 train --quiet --config " + config_path; }
  // Waits until a training holds the folder: it writes config.yaml right after taking the lock.
  void wait_until_started() const {
    for (int i = 0; i < 600 && !std::filesystem::exists(run + "/config.yaml"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    ASSERT_TRUE(std::filesystem::exists(run + "/config.yaml")) << "no training started within 30 s";
  }
};

TEST(RunLock, TwoTrainingsIntoOneFolderOneRunsTheOtherIsRefusedAtOnce) {
  TrainingFixture f;
  testing::CommandResult first;
  std::atomic<bool> first_done{false};
  std::thread runner([&] {
    first = run_cprfl(f.train_command());
    first_done = true;
  });
  f.wait_until_started();
  const auto start = std::chrono::steady_clock::now();
  auto second = run_cprfl(f.train_command());
  const double second_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const bool overlapped = !first_done;
  runner.join();
  ASSERT_TRUE(overlapped) << "the first training ended before the second was refused; lengthen it";
  ASSERT_EQ(first.exit_code, 0) << first.output;
  EXPECT_EQ(second.exit_code, 1) << second.output;
  EXPECT_NE(second.output.find("error: run folder " + f.run + " is in use by process "), std::string::npos)
      << second.output;
  EXPECT_NE(second.output.find("wait for it or choose another train.out_dir"), std::string::npos) << second.output;
  EXPECT_EQ(second.output.find("epoch"), std::string::npos) << "the refused run started training:\n" << second.output;
  EXPECT_LT(second_s, 10.0);  // refused at start-up, not after training
  // The folder holds one consistent run: every epoch once, and the log equals the checkpoint's record.
  std::ifstream log(f.run + "/metrics.jsonl");
  std::string line;
  int lines = 0;
  while (std::getline(log, line)) ++lines;
  EXPECT_EQ(lines, f.epochs);
  auto checkpoint = load_model_file(f.run + "/last.cprfl");
  EXPECT_EQ(checkpoint.info.config.get_int("optim.epochs"), f.epochs);
}

TEST(RunLock, ReadersOfLastCheckpointSeeWholeFilesWhileTrainingRewritesIt) {
  TrainingFixture f;
  testing::CommandResult training;
  std::atomic<bool> done{false};
  std::thread runner([&] {
    training = run_cprfl(f.train_command());
    done = true;
  });
  int reads = 0;
  std::vector<std::string> failures;
  const std::string checkpoint = f.run + "/last.cprfl";
  while (!done) {
    if (std::filesystem::exists(checkpoint)) {
      try {
        auto model = load_model_file(checkpoint);
        if (model.info.class_names.size() == 4) ++reads;
      } catch (const Error& e) {
        failures.push_back(e.what());
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  runner.join();
  ASSERT_EQ(training.exit_code, 0) << training.output;
  EXPECT_TRUE(failures.empty()) << failures.size() << " torn or failed reads, first: " << failures.front();
  EXPECT_GE(reads, 2) << "the reader never overlapped the training";
  // And the real `eval` on the finished run.
  auto eval = run_cprfl("eval --model " + checkpoint);
  EXPECT_EQ(eval.exit_code, 0) << eval.output;
}

TEST(RunLock, ResumeAfterAKilledRunIsNotBlocked) {
  TrainingFixture f;
  std::filesystem::create_directories(f.run);
  pid_t holder = lock_in_child(f.run, true);  // a run that died holding the folder
  const int died = wait_for(holder);
  ASSERT_TRUE(WIFSIGNALED(died));
  auto result = run_cprfl(f.train_command() + " --set optim.epochs=1");
  EXPECT_EQ(result.exit_code, 0) << result.output;
  auto resumed = run_cprfl("--threads 1 train --quiet --resume " + f.run + " --set optim.epochs=2");
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  // The checkpoint file may be named in place of its folder.
  auto by_file = run_cprfl("--threads 1 train --quiet --resume " + f.run + "/last.cprfl --set optim.epochs=3");
  EXPECT_EQ(by_file.exit_code, 0) << by_file.output;
  EXPECT_EQ(load_model_file(f.run + "/last.cprfl").info.config.get_int("optim.epochs"), 3);
}

}  // namespace
}  // namespace cprfl
