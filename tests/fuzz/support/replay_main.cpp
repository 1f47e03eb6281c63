// Replays fuzz inputs without libFuzzer: the main of the fuzz_replay_<reader> programs that the
// normal build makes from each tests/fuzz/fuzz_<reader>.cpp (any compiler; CTest runs one
// FuzzReplay.<reader> test per target over its committed corpus, tests/fuzz/corpus/<reader>/).
// Each input goes through the same entry point as under libFuzzer (fuzz_entry.cpp: a
// cprfl::Error is the expected answer to bad input); the empty input first, as libFuzzer does.
// Any other exception fails the replay naming the file; a crash or a broken invariant aborts.
//
//   fuzz_replay_<reader> FILE_OR_FOLDER...     (folders: every regular file in them, sorted)
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size);

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE_OR_FOLDER...\n", argv[0]);
    return 2;
  }
  std::vector<std::filesystem::path> inputs;
  for (int i = 1; i < argc; ++i) {
    std::filesystem::path path(argv[i]);
    std::error_code error;
    if (std::filesystem::is_directory(path, error)) {
      std::vector<std::filesystem::path> files;
      for (const auto& entry : std::filesystem::directory_iterator(path, error))
        if (entry.is_regular_file()) files.push_back(entry.path());
      std::sort(files.begin(), files.end());
      if (files.empty()) {
        std::fprintf(stderr, "fuzz replay: %s holds no inputs\n", argv[i]);
        return 2;
      }
      inputs.insert(inputs.end(), files.begin(), files.end());
    } else if (std::filesystem::is_regular_file(path, error)) {
      inputs.push_back(path);
    } else {
      std::fprintf(stderr, "fuzz replay: %s: no such file or folder\n", argv[i]);
      return 2;
    }
  }

  int failed = 0;
  auto replay = [&](const std::string& name, const std::string& bytes) {
    std::fprintf(stderr, "fuzz replay: %s (%zu bytes)\n", name.c_str(), bytes.size());
    std::fflush(stderr);  // a crash below leaves this line as the culprit
    try {
      LLVMFuzzerTestOneInput(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
    } catch (const std::exception& e) {
      std::fprintf(stderr, "fuzz replay: FAILED on %s: an exception other than cprfl::Error escaped: %s\n",
                   name.c_str(), e.what());
      ++failed;
    } catch (...) {
      std::fprintf(stderr, "fuzz replay: FAILED on %s: a non-standard exception escaped\n", name.c_str());
      ++failed;
    }
  };
  replay("(empty input)", "");
  for (const auto& path : inputs) {
    std::ifstream in(path, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (!in.good() && !in.eof()) {
      std::fprintf(stderr, "fuzz replay: cannot read %s\n", path.c_str());
      return 2;
    }
    replay(path.string(), bytes);
  }
  std::fprintf(stderr, "fuzz replay: %zu inputs, %d failed\n", inputs.size() + 1, failed);
  return failed == 0 ? 0 : 1;
}
