// libFuzzer's entry point, shared by every target: a target only defines fuzz_one().
// A cprfl::Error is the expected answer to bad input; anything else that escapes (another
// exception, a crash, a sanitizer report, a hang, an allocation above -rss_limit_mb) is a
// finding that libFuzzer reports.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string_view>

#include "cprfl/common/error.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    cprfl::fuzz::fuzz_one(std::string_view(reinterpret_cast<const char*>(data), size));
  } catch (const cprfl::Error& e) {
    // A clear message for bad input: the expected outcome. CPRFL_FUZZ_VERBOSE=1 prints it
    // (to check that the seeds get past the first checks: run a target with -runs=0).
    static const bool verbose = std::getenv("CPRFL_FUZZ_VERBOSE") != nullptr;
    if (verbose) std::cerr << "cprfl::Error: " << e.what() << "\n";
  }
  return 0;
}
