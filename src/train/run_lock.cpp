#include "cprfl/train/run_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <string>

#include "cprfl/common/error.h"

namespace cprfl {
namespace {

std::string read_holder(int fd) {
  char buffer[256] = {};
  const ssize_t n = pread(fd, buffer, sizeof(buffer) - 1, 0);
  if (n <= 0) return "";
  std::string text(buffer, static_cast<std::size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == '\0')) text.pop_back();
  return text;
}

std::string now_utc() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  gmtime_r(&now, &utc);
  char text[32];
  std::strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%S UTC", &utc);
  return text;
}

}  // namespace

RunFolderLock::RunFolderLock(const std::string& dir) {
  const std::string path = dir + "/" + kFileName;
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) fail_in(path, std::string("cannot open the run folder's lock file: ") + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int error = errno;
    // The holder writes "process PID (started TIME)" right after taking the lock; a reader
    // that comes in between sees an empty file.
    std::string holder = error == EWOULDBLOCK ? read_holder(fd_) : "";
    ::close(fd_);
    fd_ = -1;
    if (error != EWOULDBLOCK) fail_in(path, std::string("cannot lock the run folder: ") + std::strerror(error));
    throw Error("run folder " + dir + " is in use by " + (holder.empty() ? "another process" : holder) +
                "; wait for it or choose another train.out_dir");
  }
  const std::string holder = "process " + std::to_string(::getpid()) + " (started " + now_utc() + ")\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, holder.data(), holder.size(), 0) != static_cast<ssize_t>(holder.size()))
    warn(path + ": could not record the lock holder (" + std::strerror(errno) + "); the lock is held all the same");
}

RunFolderLock::~RunFolderLock() {
  if (fd_ >= 0) ::close(fd_);  // closing releases the flock; the file stays for the next run
}

}  // namespace cprfl
