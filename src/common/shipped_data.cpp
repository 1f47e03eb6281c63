#include "cprfl/common/shipped_data.h"

#include <cstdlib>
#include <filesystem>

namespace cprfl {

std::vector<std::string> shipped_data_roots() {
  std::vector<std::string> roots;
  if (const char* dir = std::getenv("CPRFL_DATA_DIR"); dir != nullptr && *dir != '\0') roots.emplace_back(dir);
  // An installed tool: <prefix>/bin/cprfl reads <prefix>/share/cprfl/data, wherever it was installed.
  std::error_code error;
  const auto exe = std::filesystem::read_symlink("/proc/self/exe", error);
  if (!error) roots.push_back((exe.parent_path().parent_path() / "share" / "cprfl" / "data").string());
#ifdef CPRFL_INSTALL_DATA_DIR
  roots.emplace_back(CPRFL_INSTALL_DATA_DIR);
#endif
  roots.push_back(std::string(CPRFL_SOURCE_DIR) + "/data");
  return roots;
}

std::string find_shipped_data(const std::string& path) {
  const std::string prefix = "data/";
  if (path.compare(0, prefix.size(), prefix) != 0) return "";
  const std::string rest = path.substr(prefix.size());
  std::error_code error;
  for (const auto& root : shipped_data_roots()) {
    const std::string candidate = root + "/" + rest;
    if (std::filesystem::exists(candidate, error)) return candidate;
  }
  return "";
}

std::string resolve_input_path(const std::string& path) {
  std::error_code error;
  if (path.empty() || std::filesystem::path(path).is_absolute() || std::filesystem::exists(path, error)) return path;
  std::string shipped = find_shipped_data(path);
  return shipped.empty() ? path : shipped;
}

}  // namespace cprfl
