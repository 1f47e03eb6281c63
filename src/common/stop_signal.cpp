#include "cprfl/common/stop_signal.h"

#include <csignal>
#include <cstdlib>

namespace cprfl {
namespace {

volatile std::sig_atomic_t g_signal = 0;
struct sigaction g_previous_int {}, g_previous_term {};

extern "C" void on_stop_signal(int number) {
  if (g_signal != 0) std::_Exit(130);  // asked twice: stop now
  g_signal = number;
}

}  // namespace

StopSignals::StopSignals() {
  g_signal = 0;
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;  // a loader thread reading an image must not see EINTR
  sigaction(SIGINT, &action, &g_previous_int);
  sigaction(SIGTERM, &action, &g_previous_term);
}

StopSignals::~StopSignals() {
  sigaction(SIGINT, &g_previous_int, nullptr);
  sigaction(SIGTERM, &g_previous_term, nullptr);
  g_signal = 0;
}

bool StopSignals::requested() const { return g_signal != 0; }
int StopSignals::signal() const { return static_cast<int>(g_signal); }

}  // namespace cprfl
