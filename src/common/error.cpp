#include "cprfl/common/error.h"

#include <iostream>

namespace cprfl {

void fail_at(const std::string& path, std::size_t line, const std::string& message) {
  throw Error(path + ":" + std::to_string(line) + ": " + message);
}

void fail_in(const std::string& path, const std::string& message) {
  throw Error(path + ": " + message);
}

void warn(const std::string& message) { std::cerr << "warning: " << message << "\n"; }

}  // namespace cprfl
