#include "cprfl/common/fault_point.h"

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace cprfl {
namespace {

constexpr const char* kPoints[] = {"step", "eval", "checkpoint_write"};

struct FaultPlan {
  std::string point;  // empty: no fault planned
  long long at = 0;   // the n-th arrival kills
  mutable std::atomic<long long> arrivals{0};
};

[[noreturn]] void bad_setting(const char* value, const char* why) {
  std::fprintf(stderr, "cprfl: CPRFL_FAULT_AT=%s: %s (expected <point>:<n>, n >= 1, point one of step, eval, "
               "checkpoint_write; see cprfl/common/fault_point.h)\n", value, why);
  std::_Exit(2);
}

const FaultPlan& plan() {
  static FaultPlan* const planned = [] {
    auto* p = new FaultPlan;  // never destroyed: fault points may be reached during exit
    const char* value = std::getenv("CPRFL_FAULT_AT");
    if (value == nullptr || *value == '\0') return p;
    const char* colon = std::strrchr(value, ':');
    if (colon == nullptr) bad_setting(value, "no ':<n>'");
    p->point.assign(value, colon);
    bool known = false;
    for (const char* point : kPoints) known |= p->point == point;
    if (!known) bad_setting(value, "unknown fault point");
    char* end = nullptr;
    p->at = std::strtoll(colon + 1, &end, 10);
    if (end == colon + 1 || *end != '\0' || p->at < 1) bad_setting(value, "n is not a positive integer");
    return p;
  }();
  return *planned;
}

}  // namespace

void fault_point(const char* name) {
  const FaultPlan& p = plan();
  if (p.point.empty() || p.point != name) return;
  if (p.arrivals.fetch_add(1) + 1 != p.at) return;
  std::fprintf(stderr, "cprfl: CPRFL_FAULT_AT=%s:%lld: killing this process at fault point %s\n", name, p.at, name);
  std::fflush(stderr);
  std::raise(SIGKILL);
  std::_Exit(137);  // not reached: SIGKILL cannot be caught
}

}  // namespace cprfl
