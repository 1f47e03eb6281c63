#include "fuzz_support.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>

namespace cprfl::fuzz {
namespace {

struct ScratchFiles {
  std::map<std::string, std::string> by_extension;
  ~ScratchFiles() {
    for (auto& [extension, path] : by_extension) std::remove(path.c_str());
  }
};

}  // namespace

const std::string& scratch_file(std::string_view bytes, const std::string& extension) {
  static ScratchFiles files;
  auto [it, inserted] = files.by_extension.emplace(extension, "");
  if (inserted) {
    const char* tmp = std::getenv("TMPDIR");
    it->second = std::string(tmp && *tmp ? tmp : "/tmp") + "/cprfl-fuzz-" + std::to_string(::getpid()) + extension;
  }
  std::ofstream out(it->second, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) invariant_failed("cannot write the scratch file " + it->second);
  return it->second;
}

void invariant_failed(const std::string& what) {
  std::fprintf(stderr, "fuzz invariant failed: %s\n", what.c_str());
  std::abort();
}

}  // namespace cprfl::fuzz
