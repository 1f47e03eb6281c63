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
  int signal = SIGKILL;  // or SIGINT / SIGTERM (":INT", ":TERM"): a stop request instead of a kill
  mutable std::atomic<long long> arrivals{0};
};

[[noreturn]] void bad_setting(const char* value, const char* why) {
  std::fprintf(stderr, "cprfl: CPRFL_FAULT_AT=%s: %s (expected <point>:<n>[:INT|:TERM], n >= 1, point one of step, "
               "eval, checkpoint_write; see cprfl/common/fault_point.h)\n", value, why);
  std::_Exit(2);
}

const FaultPlan& plan() {
  static FaultPlan* const planned = [] {
    auto* p = new FaultPlan;  // never destroyed: fault points may be reached during exit
    const char* value = std::getenv("CPRFL_FAULT_AT");
    if (value == nullptr || *value == '\0') return p;
    // In a data-parallel run, CPRFL_FAULT_RANK=<r> arms the fault in rank r only.
    const char* only_rank = std::getenv("CPRFL_FAULT_RANK");
    const char* rank = std::getenv("RANK");
    if (only_rank != nullptr && *only_rank != '\0' && std::string(rank ? rank : "0") != only_rank) return p;
    std::string text = value;
    // An optional third field: the signal to send instead of SIGKILL.
    const std::size_t first = text.find(':'), last = text.rfind(':');
    if (first != std::string::npos && last != first) {
      const std::string name = text.substr(last + 1);
      if (name == "INT") p->signal = SIGINT;
      else if (name == "TERM") p->signal = SIGTERM;
      else bad_setting(value, "the signal must be INT or TERM");
      text.resize(last);
    }
    const char* colon = std::strrchr(text.c_str(), ':');
    if (colon == nullptr) bad_setting(value, "no ':<n>'");
    p->point.assign(text.c_str(), colon);
    bool known = false;
    for (const char* point : kPoints) known |= p->point == point;
    if (!known) bad_setting(value, "unknown fault point");
    char* end = nullptr;
    p->at = std::strtoll(colon + 1, &end, 10);  // (colon points into `text`, alive here)
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
  if (p.signal != SIGKILL) {
    std::fprintf(stderr, "cprfl: CPRFL_FAULT_AT=%s:%lld: sending this process %s at fault point %s\n", name, p.at,
                 p.signal == SIGINT ? "SIGINT" : "SIGTERM", name);
    std::fflush(stderr);
    std::raise(p.signal);
    return;
  }
  std::fprintf(stderr, "cprfl: CPRFL_FAULT_AT=%s:%lld: killing this process at fault point %s\n", name, p.at, name);
  std::fflush(stderr);
  std::raise(SIGKILL);
  std::_Exit(137);  // not reached: SIGKILL cannot be caught
}

}  // namespace cprfl
