#include "cprfl/common/progress.h"

#include <unistd.h>

#include <cstdio>

namespace cprfl {

std::string format_duration(double seconds) {
  if (seconds < 0 || seconds > 1e7) return "--:--";
  long total = static_cast<long>(seconds + 0.5);
  char buffer[32];
  if (total >= 3600)
    std::snprintf(buffer, sizeof buffer, "%ld:%02ld:%02ld", total / 3600, (total / 60) % 60, total % 60);
  else
    std::snprintf(buffer, sizeof buffer, "%02ld:%02ld", total / 60, total % 60);
  return buffer;
}

ProgressBar::ProgressBar(std::string label, std::int64_t total, std::string unit)
    : label_(std::move(label)), unit_(std::move(unit)), total_(total), tty_(isatty(STDERR_FILENO) != 0),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

ProgressBar::~ProgressBar() {
  if (!finished_ && tty_ && done_ > 0) std::fputc('\n', stderr);
}

double ProgressBar::rate() const {
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  return elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
}

void ProgressBar::update(std::int64_t done, const std::string& fields) {
  done_ = done;
  auto now = std::chrono::steady_clock::now();
  if (tty_) {
    if (now - last_draw_ < std::chrono::milliseconds(100) && done_ < total_) return;
    last_draw_ = now;
    draw(fields, false);
  } else if (total_ > 0) {
    int decile = static_cast<int>(10 * done_ / total_);
    if (decile != last_decile_ && done_ < total_) {
      last_decile_ = decile;
      draw(fields, true);
    }
  }
}

void ProgressBar::finish(const std::string& fields) {
  if (finished_) return;
  finished_ = true;
  draw(fields, true);
}

void ProgressBar::draw(const std::string& fields, bool final_line) {
  double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  double per_second = elapsed > 0 ? static_cast<double>(done_) / elapsed : 0.0;
  double left = per_second > 0 ? static_cast<double>(total_ - done_) / per_second : -1;
  const int width = 24;
  int filled = total_ > 0 ? static_cast<int>(width * done_ / total_) : 0;
  std::string bar(static_cast<std::size_t>(filled), '#');
  bar.resize(width, '.');
  std::fprintf(stderr, "%s%s [%s] %lld/%lld %.1f %s/s %s<%s%s%s", tty_ ? "\r\033[K" : "", label_.c_str(), bar.c_str(),
               static_cast<long long>(done_), static_cast<long long>(total_), per_second, unit_.c_str(),
               format_duration(elapsed).c_str(), format_duration(left).c_str(), fields.empty() ? "" : " ",
               fields.c_str());
  if (final_line || !tty_) std::fputc('\n', stderr);
  std::fflush(stderr);
}

}  // namespace cprfl
