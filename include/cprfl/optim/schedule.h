#pragma once
// Learning-rate schedules, stepped once per optimizer step.
// OneCycle follows PyTorch's OneCycleLR exactly (two phases, cosine annealing,
// div_factor / final_div_factor, and the beta1 "momentum" cycled 0.95 → 0.85 → 0.95 as
// PyTorch does by default for Adam-type optimizers).
#include <cstdint>
#include <optional>
#include <string>

namespace cprfl {

struct ScheduleOptions {
  std::string kind = "onecycle";  // onecycle | cosine | constant
  std::int64_t total_steps = 1;
  double pct_start = 0.1;
  double div_factor = 25.0;
  double final_div_factor = 1e4;
  bool cycle_momentum = true;
  double base_momentum = 0.85;
  double max_momentum = 0.95;
};

class LrSchedule {
 public:
  explicit LrSchedule(ScheduleOptions options);
  // Learning rate at `step` (0-based count of optimizer steps taken) for a group whose peak is max_lr.
  double lr_at(std::int64_t step, double max_lr) const;
  // beta1 at `step`, when the schedule cycles it.
  std::optional<double> momentum_at(std::int64_t step) const;
  const ScheduleOptions& options() const { return options_; }

 private:
  ScheduleOptions options_;
};

}  // namespace cprfl
