// libFuzzer's entry point, shared by every target: a target only defines fuzz_one().
// A cprfl::Error is the expected answer to bad input; anything else that escapes (another
// exception, a crash, a sanitizer report, a hang, an allocation above -rss_limit_mb) is a
// finding that libFuzzer reports.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cprfl/common/error.h"
#include "fuzz_support.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    cprfl::fuzz::fuzz_one(std::string_view(reinterpret_cast<const char*>(data), size));
  } catch (const cprfl::Error&) {
    // A clear message for bad input: the expected outcome.
  }
  return 0;
}
