#pragma once
// Ctrl-C and SIGTERM as a request to stop at the next safe place, for long work that can save
// its state (training): while a StopSignals object lives, the first SIGINT or SIGTERM only sets
// a flag the work polls; a second one ends the process at once with status 130 (what was saved
// atomically before stays intact). The previous handlers come back when the object goes away.
namespace cprfl {

class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  bool requested() const;
  int signal() const;  // the signal received (0: none)
};

}  // namespace cprfl
