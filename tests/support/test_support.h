#pragma once
// Helpers shared by the test files: scratch folders, small files, and running the real
// cprfl binary the way a user does.
#include <functional>
#include <string>

namespace cprfl::testing {

// A fresh folder under the system temp dir, removed when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void write_text(const std::string& path, const std::string& text);
std::string read_text(const std::string& path);

struct CommandResult {
  // The exit status as a shell reports it: the process's own code, or 128 + the signal
  // number when a signal ended it (then `signalled` is true), so a crash (SIGSEGV: 139,
  // SIGABRT: 134) never reads like an error exit.
  int exit_code = -1;
  bool signalled = false;
  int signal = 0;      // the signal that ended it (when signalled)
  std::string output;  // stdout and stderr together
};

// Runs `cprfl <arguments>` (the binary built beside the tests) through the shell, which
// execs it, so a death by signal reaches the test as such.
CommandResult run_cprfl(const std::string& arguments);

// Runs `action`; returns the message of the cprfl::Error it throws, or "" if it throws none.
std::string error_of(const std::function<void()>& action);

// The project's source folder (for data/ files).
std::string source_dir();

}  // namespace cprfl::testing
