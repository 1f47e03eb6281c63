#include "cprfl/train/step_timing.h"

#include <chrono>
#include <cstring>

namespace cprfl {

TimedStep time_training_step(Trainer& trainer, const torch::Tensor& images, const torch::Tensor& targets) {
  using Clock = std::chrono::steady_clock;
  TimedStep timed;
  const auto start = Clock::now();
  auto mark = start;
  // Each phase runs from the end of the one before; on a CPU the work is done when the call
  // returns, so the wall clock between hooks is the phase's time.
  StepHook hook = [&](const char* phase) {
    const auto now = Clock::now();
    const double seconds = std::chrono::duration<double>(now - mark).count();
    mark = now;
    if (std::strcmp(phase, "forward") == 0) timed.forward_s += seconds;
    else if (std::strcmp(phase, "backward") == 0) timed.backward_s += seconds;
    else timed.optimizer_s += seconds;
  };
  timed.loss = trainer.step(images, targets, hook);
  timed.total_s = std::chrono::duration<double>(Clock::now() - start).count();
  return timed;
}

}  // namespace cprfl
