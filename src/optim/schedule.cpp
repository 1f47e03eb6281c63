#include "cprfl/optim/schedule.h"

#include <algorithm>
#include <cmath>

#include "cprfl/common/error.h"

namespace cprfl {
namespace {

constexpr double kPi = 3.14159265358979323846;

double cosine_anneal(double start, double end, double pct) { return end + (start - end) / 2.0 * (std::cos(kPi * pct) + 1.0); }

}  // namespace

LrSchedule::LrSchedule(ScheduleOptions options) : options_(std::move(options)) {
  if (options_.total_steps < 1) throw Error("schedule: total_steps must be >= 1");
  if (options_.kind != "onecycle" && options_.kind != "cosine" && options_.kind != "constant")
    throw Error("schedule: unknown kind '" + options_.kind + "' (onecycle, cosine, constant)");
  if (options_.kind == "onecycle" && (options_.pct_start <= 0 || options_.pct_start >= 1))
    throw Error("schedule: optim.pct_start must be in (0, 1)");
}

double LrSchedule::lr_at(std::int64_t step, double max_lr) const {
  const auto& o = options_;
  double s = static_cast<double>(std::min(step, o.total_steps - 1));
  if (o.kind == "constant") return max_lr;
  if (o.kind == "cosine") return cosine_anneal(max_lr, 0.0, o.total_steps > 1 ? s / static_cast<double>(o.total_steps - 1) : 0.0);
  // PyTorch OneCycleLR: phase ends at pct_start*total - 1 and total - 1.
  double initial = max_lr / o.div_factor;
  double minimum = initial / o.final_div_factor;
  double warm_end = o.pct_start * static_cast<double>(o.total_steps) - 1.0;
  double last = static_cast<double>(o.total_steps) - 1.0;
  if (s <= warm_end) return cosine_anneal(initial, max_lr, warm_end > 0 ? s / warm_end : 1.0);
  return cosine_anneal(max_lr, minimum, last > warm_end ? (s - warm_end) / (last - warm_end) : 1.0);
}

std::optional<double> LrSchedule::momentum_at(std::int64_t step) const {
  const auto& o = options_;
  if (o.kind != "onecycle" || !o.cycle_momentum) return std::nullopt;
  double s = static_cast<double>(std::min(step, o.total_steps - 1));
  double warm_end = o.pct_start * static_cast<double>(o.total_steps) - 1.0;
  double last = static_cast<double>(o.total_steps) - 1.0;
  if (s <= warm_end) return cosine_anneal(o.max_momentum, o.base_momentum, warm_end > 0 ? s / warm_end : 1.0);
  return cosine_anneal(o.base_momentum, o.max_momentum, last > warm_end ? (s - warm_end) / (last - warm_end) : 1.0);
}

}  // namespace cprfl
