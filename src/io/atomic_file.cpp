#include "cprfl/io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <random>
#include <vector>

#include "cprfl/common/error.h"
#include "cprfl/common/fault_point.h"

namespace cprfl {

void write_file_atomic(const std::string& path, std::string_view bytes, const char* fault_point_name) {
  std::filesystem::path target(path);
  std::filesystem::path folder = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  std::random_device seed;
  std::string temp = (folder / ("." + target.filename().string() + ".tmp" + std::to_string(seed()))).string();
  int fd = ::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) fail_in(path, std::string("cannot write: ") + std::strerror(errno));
  auto abort_write = [&](const char* what) {
    int saved = errno;
    ::close(fd);
    ::unlink(temp.c_str());
    fail_in(path, std::string(what) + ": " + std::strerror(saved));
  };
  auto write_up_to = [&](std::size_t end, std::size_t& written) {
    while (written < end) {
      ssize_t n = ::write(fd, bytes.data() + written, end - written);
      if (n < 0) {
        if (errno == EINTR) continue;
        abort_write("write failed");
      }
      written += static_cast<std::size_t>(n);
    }
  };
  std::size_t written = 0;
  if (fault_point_name != nullptr) {
    write_up_to(bytes.size() / 2, written);
    fault_point(fault_point_name);
  }
  write_up_to(bytes.size(), written);
  if (::fsync(fd) != 0) abort_write("fsync failed");
  if (::close(fd) != 0) {
    int saved = errno;
    ::unlink(temp.c_str());
    fail_in(path, std::string("close failed: ") + std::strerror(saved));
  }
  if (::rename(temp.c_str(), path.c_str()) != 0) {
    int saved = errno;
    ::unlink(temp.c_str());
    fail_in(path, std::string("rename failed: ") + std::strerror(saved));
  }
}

void remove_stale_temporaries(const std::string& path) {
  std::filesystem::path target(path);
  std::filesystem::path folder = target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  const std::string prefix = "." + target.filename().string() + ".tmp";
  std::vector<std::filesystem::path> stale;  // collected first: no removal while listing
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(folder, error)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > prefix.size() && name.compare(0, prefix.size(), prefix) == 0 &&
        name.find_first_not_of("0123456789", prefix.size()) == std::string::npos)
      stale.push_back(entry.path());
  }
  for (const auto& file : stale) std::filesystem::remove(file, error);
}

void check_output_path(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code error;
  if (fs::is_directory(path, error)) fail_in(path, "is a folder; give a file name to write");
  const fs::path parent = fs::path(path).parent_path().empty() ? fs::path(".") : fs::path(path).parent_path();
  if (!fs::exists(parent, error)) fail_in(path, "cannot write: its folder " + parent.string() + " does not exist");
  if (!fs::is_directory(parent, error)) fail_in(path, "cannot write: " + parent.string() + " is not a folder");
  if (::access(parent.c_str(), W_OK) != 0)
    fail_in(path, "cannot write in " + parent.string() + ": " + std::strerror(errno));
}

void make_directories(const std::string& path) {
  std::error_code error;
  std::filesystem::create_directories(path, error);
  if (error) fail_in(path, "cannot create directory: " + error.message());
}

}  // namespace cprfl
