#pragma once
// Times the parts of one real training step (Trainer::step through its StepHook): what
// bench/bench_perf.cpp reports for its training cases, so the benchmark measures the step
// training runs, not a copy of it.
#include <torch/torch.h>

#include "cprfl/train/trainer.h"

namespace cprfl {

struct TimedStep {
  torch::Tensor loss;       // the step's batch loss, as Trainer::step returns it
  double forward_s = 0;     // model + loss, summed over the micro-batches
  double backward_s = 0;    // summed over the micro-batches
  double optimizer_s = 0;   // gradient clipping, optimizer step, EMA update
  double total_s = 0;
};

TimedStep time_training_step(Trainer& trainer, const torch::Tensor& images, const torch::Tensor& targets);

}  // namespace cprfl
