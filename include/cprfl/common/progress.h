#pragma once
// A one-line progress bar on stderr: done/total, rate, elapsed and time left, plus any
// caller-supplied fields (loss, lr …). Redraws at most ~10 times a second; when stderr is
// not a terminal it prints a plain line every 10% instead, so logs stay readable.
#include <chrono>
#include <cstdint>
#include <string>

namespace cprfl {

class ProgressBar {
 public:
  ProgressBar(std::string label, std::int64_t total, std::string unit = "it");
  ~ProgressBar();
  void update(std::int64_t done, const std::string& fields = "");
  void advance(std::int64_t by = 1, const std::string& fields = "") { update(done_ + by, fields); }
  void finish(const std::string& fields = "");
  double rate() const;  // units per second so far

 private:
  void draw(const std::string& fields, bool final_line);
  std::string label_;
  std::string unit_;
  std::int64_t total_;
  std::int64_t done_ = 0;
  int last_decile_ = -1;
  bool finished_ = false;
  bool tty_;
  std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
};

std::string format_duration(double seconds);  // "1:02:03" or "02:03"

}  // namespace cprfl
