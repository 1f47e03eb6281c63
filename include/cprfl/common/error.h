#pragma once
// The one exception type of the library: its message is complete and user-facing
// (it names the file and line or field at fault). The CLI prints it and exits non-zero.
#include <cstddef>
#include <stdexcept>
#include <string>

namespace cprfl {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "path:line: message" — the form compilers use, so editors can jump to the place.
[[noreturn]] void fail_at(const std::string& path, std::size_t line, const std::string& message);
// "path: message"
[[noreturn]] void fail_in(const std::string& path, const std::string& message);

// Writes a non-fatal warning to stderr ("warning: ...").
void warn(const std::string& message);

}  // namespace cprfl
