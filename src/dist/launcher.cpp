#include "cprfl/dist/launcher.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <thread>

#include "cprfl/common/error.h"

namespace cprfl {
namespace {

volatile sig_atomic_t g_forward_signal = 0;

void remember_signal(int signal) { g_forward_signal = signal; }

std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exited with code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return std::string("was killed by signal ") + std::to_string(WTERMSIG(status)) + " (" +
                                  strsignal(WTERMSIG(status)) + ")";
  return "stopped";
}

int exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

std::vector<std::string> without_nproc(const std::vector<std::string>& args) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--nproc") {
      ++i;  // and its value
      continue;
    }
    if (args[i].rfind("--nproc=", 0) == 0) continue;
    out.push_back(args[i]);
  }
  return out;
}

std::vector<std::string> own_command_line() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  std::size_t start = 0;
  for (std::size_t i = 0; i < bytes.size(); ++i)
    if (bytes[i] == '\0') {
      args.push_back(bytes.substr(start, i - start));
      start = i + 1;
    }
  if (args.empty()) throw Error("/proc/self/cmdline: could not read this process's command line");
  return args;
}

int free_loopback_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error(std::string("launcher: socket(): ") + std::strerror(errno));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  socklen_t length = sizeof address;
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    const std::string reason = std::strerror(errno);
    close(fd);
    throw Error("launcher: no free port on 127.0.0.1: " + reason);
  }
  close(fd);
  return ntohs(address.sin_port);
}

int launch_workers(int nproc, const std::vector<std::string>& args, int grace_seconds) {
  if (nproc < 1) throw Error("--nproc: must be at least 1, got " + std::to_string(nproc));
  const std::string self = "/proc/self/exe";
  const std::string port = std::to_string(free_loopback_port());
  std::cerr << "train --nproc " << nproc << ": " << nproc << " worker processes, rendezvous at 127.0.0.1:" << port << "\n";
  // Signals that arrive while the workers run are forwarded to them (each checkpoints and stops).
  struct sigaction forward {}, old_int {}, old_term {};
  forward.sa_handler = remember_signal;
  sigemptyset(&forward.sa_mask);
  sigaction(SIGINT, &forward, &old_int);
  sigaction(SIGTERM, &forward, &old_term);

  std::map<pid_t, int> rank_of;
  for (int rank = 0; rank < nproc; ++rank) {
    const pid_t pid = fork();
    if (pid < 0) throw Error(std::string("launcher: fork(): ") + std::strerror(errno));
    if (pid == 0) {
      setenv("RANK", std::to_string(rank).c_str(), 1);
      setenv("LOCAL_RANK", std::to_string(rank).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      setenv("LOCAL_WORLD_SIZE", std::to_string(nproc).c_str(), 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", port.c_str(), 1);
      signal(SIGINT, SIG_DFL);
      signal(SIGTERM, SIG_DFL);
      // Its own process group, so a terminal's Ctrl-C reaches it once (forwarded by the
      // launcher), and SIGTERM when the launcher itself dies.
      setpgid(0, 0);
      prctl(PR_SET_PDEATHSIG, SIGTERM);
      std::vector<char*> argv;
      for (const auto& arg : args) argv.push_back(const_cast<char*>(arg.c_str()));
      argv.push_back(nullptr);
      execv(self.c_str(), argv.data());
      std::cerr << "launcher: could not start worker " << rank << ": " << std::strerror(errno) << "\n";
      _exit(127);
    }
    rank_of[pid] = rank;
  }

  int result = 0;
  bool stopping = false;
  auto stop_deadline = std::chrono::steady_clock::time_point::max();
  while (!rank_of.empty()) {
    if (g_forward_signal != 0) {
      for (const auto& [pid, rank] : rank_of) kill(pid, g_forward_signal);
      g_forward_signal = 0;
    }
    if (stopping && std::chrono::steady_clock::now() > stop_deadline) {
      for (const auto& [pid, rank] : rank_of) kill(pid, SIGKILL);
      stop_deadline = std::chrono::steady_clock::time_point::max();
    }
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    auto found = rank_of.find(pid);
    if (found == rank_of.end()) continue;
    const int rank = found->second;
    rank_of.erase(found);
    const int code = exit_code_of(status);
    if (code != 0 && result == 0) {
      result = code;
      std::cerr << "train --nproc: worker rank " << rank << " " << describe_status(status);
      if (!rank_of.empty()) std::cerr << "; stopping the other " << rank_of.size() << " worker(s)";
      std::cerr << "\n";
      if (!stopping) {
        stopping = true;
        for (const auto& [other, other_rank] : rank_of) kill(other, SIGTERM);
        stop_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(grace_seconds);
      }
    }
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return result;
}

}  // namespace cprfl
