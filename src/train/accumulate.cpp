#include "cprfl/train/accumulate.h"

#include <torch/torch.h>

#include <algorithm>

#include "cprfl/common/error.h"

namespace cprfl {

torch::Tensor accumulate_gradients(const BatchLoss& loss_of, const torch::Tensor& images,
                                   const torch::Tensor& targets, int64_t micro_batches, const StepHook& hook,
                                   const std::function<void(bool last)>& before_backward) {
  if (micro_batches < 1) fail_in("optim.accumulate_steps", "must be at least 1");
  const int64_t rows = images.size(0);
  const int64_t chunks = std::max<int64_t>(1, std::min(micro_batches, rows));
  torch::Tensor total;
  int64_t first = 0;
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    const int64_t count = rows / chunks + (chunk < rows % chunks ? 1 : 0);
    auto loss = loss_of(images.slice(0, first, first + count), targets.slice(0, first, first + count)) *
                (static_cast<double>(count) / static_cast<double>(rows));
    if (hook) hook("forward");
    if (before_backward) before_backward(chunk + 1 == chunks);
    loss.backward();
    if (hook) hook("backward");
    total = total.defined() ? total + loss.detach() : loss.detach();
    first += count;
  }
  return total;
}

}  // namespace cprfl
