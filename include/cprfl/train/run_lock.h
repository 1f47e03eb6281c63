#pragma once
// A run folder belongs to one training process at a time. RunFolderLock takes an exclusive
// flock(2) on `<dir>/.cprfl.lock` and holds it for its lifetime; the kernel drops the lock
// when the process dies, however it dies (SIGKILL included), so a stale lock never blocks.
// The file records the holder's pid and start time, for the message a second process gets.
// Readers (eval, predict) take no lock: checkpoints are replaced by atomic renames, so they
// see a whole old file or a whole new one.
#include <string>

namespace cprfl {

class RunFolderLock {
 public:
  // Throws cprfl::Error at once (never waits) when another process holds the folder:
  // "run folder DIR is in use by process PID (started TIME); wait for it or choose another
  // train.out_dir". The folder must exist.
  explicit RunFolderLock(const std::string& dir);
  ~RunFolderLock();
  RunFolderLock(const RunFolderLock&) = delete;
  RunFolderLock& operator=(const RunFolderLock&) = delete;

  static constexpr const char* kFileName = ".cprfl.lock";

 private:
  int fd_ = -1;
};

}  // namespace cprfl
