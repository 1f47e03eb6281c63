#pragma once
// Timing helpers shared by the benchmarks: wall-clock seconds, timed calls after warm-up
// calls (the first calls of a process build oneDNN primitives and the thread pool), their
// median/p90/best, this process's peak resident memory and the machine's load average
// (recorded beside each figure, since the cores may be shared).
#include <algorithm>
#include <chrono>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cprfl::bench {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// `warmup` untimed calls, then the seconds of each of `runs` timed calls.
inline std::vector<double> time_calls(const std::function<void()>& call, int warmup, int runs) {
  for (int i = 0; i < warmup; ++i) call();
  std::vector<double> times;
  for (int i = 0; i < runs; ++i) {
    auto start = Clock::now();
    call();
    times.push_back(seconds_since(start));
  }
  return times;
}

// The median is steadier than the mean on shared cores.
inline double median_of(std::vector<double> times) {
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

inline nlohmann::json summary_of(std::vector<double> times) {
  std::sort(times.begin(), times.end());
  auto at = [&](double q) { return times[std::min(times.size() - 1, static_cast<std::size_t>(q * times.size()))]; };
  return {{"median_s", at(0.5)}, {"p90_s", at(0.9)}, {"min_s", times.front()}, {"runs", times.size()}};
}

// VmHWM of this process in MB, or -1 where /proc is missing.
inline double peak_rss_mb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmHWM:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;  // kB
  return -1;
}

inline std::string load_average() {
  std::ifstream in("/proc/loadavg");
  std::string a, b, c;
  in >> a >> b >> c;
  return a + " " + b + " " + c;
}

}  // namespace cprfl::bench
