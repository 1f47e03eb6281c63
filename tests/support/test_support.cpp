#include "test_support.h"

#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "cprfl/common/error.h"

namespace cprfl::testing {

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "cprfl-test-XXXXXX").string();
  if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

CommandResult run_cprfl(const std::string& arguments) {
  // CPRFL_TEST_CLI_THREADS=N runs every command with --threads N (unless the test sets it), so
  // the suite can be run with the CLI and the test process on different thread counts.
  std::string threads;
  const char* cli_threads = std::getenv("CPRFL_TEST_CLI_THREADS");
  if (cli_threads && *cli_threads && arguments.rfind("--threads", 0) != 0)
    threads = std::string("--threads ") + cli_threads + " ";
  // `exec`: the shell becomes cprfl, so a signal that kills it is seen here, not the shell's
  // translation of it into an exit code.
  std::string command = "exec " + std::string(CPRFL_TOOL_PATH) + " " + threads + arguments + " 2>&1";
  CommandResult result;
  FILE* pipe = popen(command.c_str(), "r");
  if (!pipe) throw std::runtime_error("popen failed");
  std::array<char, 4096> buffer{};
  std::size_t n;
  while ((n = fread(buffer.data(), 1, buffer.size(), pipe)) > 0) result.output.append(buffer.data(), n);
  int status = pclose(pipe);
  if (status == -1) throw std::runtime_error("pclose failed for: " + command);
  if (WIFEXITED(status)) {
    result.exit_code = WEXITSTATUS(status);
  } else if (WIFSIGNALED(status)) {
    result.signalled = true;
    result.signal = WTERMSIG(status);
    result.exit_code = 128 + result.signal;
  }
  return result;
}

std::string error_of(const std::function<void()>& action) {
  try {
    action();
  } catch (const cprfl::Error& e) {
    return e.what();
  }
  return "";
}

std::string source_dir() { return CPRFL_SOURCE_DIR; }

}  // namespace cprfl::testing
