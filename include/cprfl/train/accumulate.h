#pragma once
// Gradient accumulation: one optimizer batch run as several smaller forward/backward passes,
// so the paper's batch fits a small machine's memory.
#include <cstdint>
#include <functional>

#include <torch/types.h>

namespace cprfl {

// loss_of(images, targets) -> a mean-reduced scalar loss over those rows.
using BatchLoss = std::function<torch::Tensor(const torch::Tensor& images, const torch::Tensor& targets)>;

// Told as each part of a training step ends: "forward" (model and loss) and "backward", once
// per micro-batch, then "optimizer" (see Trainer::step). Lets a benchmark time the parts of
// the real step; it must not touch the tensors.
using StepHook = std::function<void(const char* phase_ended)>;

// Runs loss_of and backward() on `micro_batches` consecutive row chunks of the batch (as
// equal as possible; at most one per row), weighting each chunk's loss by its share of the
// rows. For a mean-reduced loss the mean of the chunks' losses, so weighted, is the whole
// batch's loss, and the accumulated gradients are the whole batch's gradients — exactly,
// up to rounding, when the model treats rows independently (train-mode BatchNorm does not:
// its statistics then come from each chunk). Returns the batch loss, detached.
// `before_backward(last)` is told before each backward whether it is the step's last (a
// data-parallel run synchronises gradients in that one only: dist/gradient_sync.h).
torch::Tensor accumulate_gradients(const BatchLoss& loss_of, const torch::Tensor& images,
                                   const torch::Tensor& targets, int64_t micro_batches,
                                   const StepHook& hook = nullptr,
                                   const std::function<void(bool last)>& before_backward = nullptr);

}  // namespace cprfl
