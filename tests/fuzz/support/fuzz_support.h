#pragma once
// What a fuzz target (tests/fuzz/fuzz_<reader>.cpp) implements and may use. Adding a target
// is one file defining fuzz_one(); tests/fuzz/CMakeLists.txt and run.sh pick it up, and its
// seed corpus goes in tests/fuzz/corpus/<reader>/.
#include <string>
#include <string_view>

namespace cprfl::fuzz {

// Feeds one input to the reader under test. Throwing cprfl::Error is fine; anything else
// (another exception, a crash) is a finding.
void fuzz_one(std::string_view bytes);

// For readers that take a path: writes `bytes` to this process's scratch file (in
// $TMPDIR or /tmp, removed at exit) and returns its path.
const std::string& scratch_file(std::string_view bytes, const std::string& extension = "");

// Stops the fuzzer with a report when an invariant of the reader does not hold (e.g. a
// round trip that changes the data).
[[noreturn]] void invariant_failed(const std::string& what);

}  // namespace cprfl::fuzz
